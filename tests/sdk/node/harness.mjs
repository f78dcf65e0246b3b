// What both SDK test files need: the binary, free ports, readiness, and a shutdown that waits
// for each process to exit before its directory is removed (a gateway drains its audit
// journal on SIGTERM; removing the directory under it races that drain).
import { rmSync } from 'node:fs';
import net from 'node:net';

export const BIN = process.env.PORTCULLIS_BIN ?? 'target/release/portcullis';

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

export async function waitReady(url, proc) {
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`process exited with ${proc.exitCode}`);
    try { const r = await fetch(url); if (r.ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not ready`);
}

function exited(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    proc.once('exit', () => { clearTimeout(timer); resolve(true); });
  });
}

// SIGTERM every process, wait up to 10 s for each (then SIGKILL), then remove the directories.
export async function stopAll(procs, dirs) {
  for (const p of procs) p.kill('SIGTERM');
  for (const p of procs) {
    if (!(await exited(p, 10_000))) {
      p.kill('SIGKILL');
      await exited(p, 5_000);
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
