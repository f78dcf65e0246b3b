// The official OpenAI Node SDK against the real gateway binary, unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { BIN, freePort, waitReady, stopAll } from './harness.mjs';

const procs = [];
const dirs = [];
let upstreamUrl, gw;

async function startGateway(upstream) {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-node-'));
  dirs.push(dir);
  const store = `sqlite://${dir}/gw.db`;
  const out = execFileSync(BIN, ['keys', 'create', '--user', 'bob', '--store', store], { encoding: 'utf8' });
  const key = out.trim().split('\n').pop();
  const port = await freePort();
  const p = spawn(BIN, ['serve', '--store', store, '--listen', `127.0.0.1:${port}`, '--upstream', upstream],
    { cwd: dir, stdio: 'ignore', env: { ...process.env, OPENAI_API_KEY: 'sk-provider-secret' } });
  procs.push(p);
  await waitReady(`http://127.0.0.1:${port}/healthz`, p);
  return { url: `http://127.0.0.1:${port}/v1`, key };
}

before(async () => {
  const port = await freePort();
  const up = spawn(BIN, ['mock-upstream', '--listen', `127.0.0.1:${port}`], { stdio: 'ignore' });
  procs.push(up);
  upstreamUrl = `http://127.0.0.1:${port}/v1`;
  await waitReady(`${upstreamUrl}/models`, up);
  gw = await startGateway(upstreamUrl);
});

after(() => stopAll(procs, dirs));

const client = (key = gw.key, url = gw.url) => new OpenAI({ baseURL: url, apiKey: key, maxRetries: 0 });

test('plain completion', async () => {
  const r = await client().chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello node' }] });
  assert.equal(r.choices[0].message.content, 'Echo: hello node');
  assert.ok(r.usage.total_tokens > 0);
});

test('streaming arrives in chunks', async () => {
  // Output guards hold back a short tail; past it, text flows as the upstream drips it.
  const words = 'one two three four five six seven eight nine ten '.repeat(4);
  const stream = await client().chat.completions.create({
    model: 'gpt-4o-mini-mock-drip-30', stream: true,
    messages: [{ role: 'user', content: words }],
  });
  let text = ''; const times = [];
  for await (const c of stream) {
    const d = c.choices[0]?.delta?.content;
    if (d) { text += d; times.push(performance.now()); }
  }
  assert.equal(text, 'Echo: ' + words);
  assert.ok(times.length >= 5);
  assert.ok(times.at(-1) - times[0] > 50, 'chunks should arrive spread out, not in one burst');
});

test('models and embeddings', async () => {
  const c = client();
  const ids = [];
  for await (const m of c.models.list()) ids.push(m.id);
  assert.ok(ids.includes('gpt-4o-mini'));
  const e = await c.embeddings.create({ model: 'text-embedding-3-small', input: ['x', 'y'] });
  assert.equal(e.data.length, 2);
  assert.equal(e.data[0].embedding.length, 16);
});

test('bad key is AuthenticationError', async () => {
  await assert.rejects(
    client('pk-wrong').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

test('malformed body is BadRequestError', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'gpt-4o-mini', messages: 'nope' }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400);
});

test('upstream 500 is InternalServerError', async () => {
  await assert.rejects(
    client().chat.completions.create({ model: 'mock-error-500', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.InternalServerError && e.status === 500);
});

test('upstream down is 502', async () => {
  const dead = await freePort();
  const g = await startGateway(`http://127.0.0.1:${dead}/v1`);
  await assert.rejects(
    client(g.key, g.url).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.APIError && e.status === 502);
});
