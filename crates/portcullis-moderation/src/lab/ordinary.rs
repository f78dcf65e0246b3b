//! Ordinary requests the project writes itself: clean training rows for the `request` gate.
//!
//! The trainable sets hold few ordinary requests (XSTest's safe prompts, JBB's benign twins,
//! a few hundred instruction prompts), so a gate that learns "asking for harmful help" from
//! AdvBench and HarmBench also learns "asking" — "Write code to sort a list" read as illicit.
//! This module composes ordinary tasks from small phrase tables (coding, operations, health,
//! history, feelings, writing, games, cooking, study, security advice, small talk), many of them
//! using words that also name harm in their ordinary sense ("kill a process", "execute a
//! query", "the battle was a massacre"). The tables are written from the domains, not copied
//! from any data set; the evaluation-only sets (ToxicChat, benign_prompts) are never read here.
//! [`generate`] is deterministic: the same rows on every run, so training stays reproducible.

use super::data::Example;

/// The data-set name of the generated rows.
pub const ORDINARY_SET: &str = "ordinary";

const LANGS: &[&str] = &[
    "Python",
    "Rust",
    "JavaScript",
    "Java",
    "C++",
    "Go",
    "Bash",
    "SQL",
    "C#",
    "TypeScript",
];

const CODE_TASKS: &[&str] = &[
    "sort a list",
    "reverse a string",
    "generate a random password",
    "hash a password with bcrypt",
    "parse a JSON file",
    "read a CSV file and sum a column",
    "kill a process by its name",
    "terminate a thread cleanly",
    "execute a shell command and capture its output",
    "connect to a PostgreSQL database",
    "validate an email address",
    "encrypt a file with AES",
    "find duplicates in an array",
    "merge two dictionaries",
    "download a file over HTTPS",
    "retry a failed request with backoff",
    "shoot an HTTP request every minute",
    "remove all whitespace from a string",
    "compute the Fibonacci numbers",
    "check if a number is prime",
    "strip HTML tags from text",
    "attack the knapsack problem with dynamic programming",
    "crack a Caesar cipher for a puzzle",
    "inject dependencies into a service class",
    "exploit multiple cores with a thread pool",
    "hide a div when a button is clicked",
    "trigger an event when a file changes",
    "destroy a window and free its memory",
    "force-push a branch safely",
    "spawn child processes and wait for them",
    "bypass the cache for one request",
    "capture a screenshot of the screen",
    "log in to a REST API with OAuth",
    "detect faces in a photo with OpenCV",
    "train a small neural network",
    "build a chatbot",
    "make a snake game",
    "send an email with an attachment",
    "scan a directory for large files",
    "convert a PDF to text",
];

const CODE_FRAMES: &[&str] = &[
    "Write some code that can {t}.",
    "Write a {l} function to {t}.",
    "Write a code snippet that shows how to {t} in {l}.",
    "How do I {t} in {l}?",
    "Can you show me how to {t} using {l}?",
    "What is the fastest way to {t} in {l}?",
    "Give me a {l} example that can {t}.",
    "Explain step by step how to {t} in {l}.",
    "My {l} program fails when I try to {t}. What am I doing wrong?",
    "help me {t} in {l} pls",
];

const OPS: &[&str] = &[
    "kill a hung process",
    "stop a Docker container",
    "kill all zombie processes",
    "terminate an EC2 instance",
    "wipe a hard drive before selling my laptop",
    "execute a cron job every hour",
    "shoot down a stuck service",
    "nuke my node_modules folder",
    "purge old logs",
    "block an IP address in the firewall",
    "reset a forgotten root password on my own server",
    "free up disk space",
    "restart nginx without downtime",
    "delete a git branch",
    "break a long-running loop",
];

const OPS_PLACES: &[&str] = &["on Linux", "on Windows", "on macOS", "in Kubernetes", ""];

const CONDITIONS: &[&str] = &[
    "a cold",
    "the flu",
    "a migraine",
    "a sprained ankle",
    "a burn from the stove",
    "high blood pressure",
    "type 2 diabetes",
    "depression",
    "an anxiety attack",
    "insomnia",
    "food poisoning",
    "a bee sting",
    "a stomach ache",
    "back pain",
    "a fever in a toddler",
];

const HEALTH_FRAMES: &[&str] = &[
    "What are the symptoms of {c}?",
    "How do I treat {c} at home?",
    "When should I see a doctor about {c}?",
    "Is {c} dangerous?",
    "What medicine helps with {c}?",
    "my mom has {c}, what should we do",
    "How long does {c} usually last?",
];

const EVENTS: &[&str] = &[
    "the Battle of Hastings",
    "the First World War",
    "the Second World War",
    "the French Revolution",
    "the assassination of Julius Caesar",
    "the assassination of Abraham Lincoln",
    "the bombing of Hiroshima",
    "the Rwandan genocide",
    "the Holocaust",
    "the fall of Rome",
    "the American Civil War",
    "the Vietnam War",
    "the attack on Pearl Harbor",
    "the Spanish Inquisition",
    "the Mongol invasions",
    "the Black Death",
    "the storming of the Bastille",
    "the partition of India",
    "the Cuban missile crisis",
    "the massacre at Wounded Knee",
];

const HISTORY_FRAMES: &[&str] = &[
    "Why did {e} happen?",
    "How many people died in {e}?",
    "Summarise {e} in three paragraphs.",
    "What were the causes and consequences of {e}?",
    "Write an essay about {e}.",
    "What weapons were used during {e}?",
    "Who was responsible for {e}?",
    "explain {e} to a 10 year old",
];

const FEELINGS: &[&str] = &[
    "I feel sad today and I don't know why.",
    "I've been lonely since I moved to a new city.",
    "My dog died last week and I miss him so much.",
    "I failed my exam and I feel like a loser.",
    "I'm so stressed about work that I can't sleep.",
    "My girlfriend broke up with me and I'm heartbroken.",
    "I feel anxious before every presentation.",
    "I'm angry at my brother for lying to me.",
    "Everything feels pointless lately.",
    "I hate Mondays so much.",
];

const FEELING_ASKS: &[&str] = &[
    "",
    " Can we talk?",
    " Any advice?",
    " How do I cope with this?",
    " What should I do?",
];

const WRITING: &[&str] = &[
    "a poem",
    "a short story",
    "a haiku",
    "a song",
    "a blog post",
    "a cover letter",
    "a birthday message",
    "a product description",
    "a speech",
    "a limerick",
];

const TOPICS: &[&str] = &[
    "the ocean",
    "a knight who fights a dragon",
    "a detective solving a murder mystery",
    "my grandmother",
    "autumn leaves",
    "a robot who wants to be human",
    "a pirate crew searching for treasure",
    "a soldier coming home from war",
    "a haunted house",
    "friendship",
    "climate change",
    "a zombie apocalypse",
    "a heist in a casino",
    "the last day of summer",
    "a villain who wants to rule the world",
];

const GAMES: &[&str] = &[
    "How do I kill the final boss in {g}?",
    "What is the best weapon in {g}?",
    "Any tips to survive longer in {g}?",
    "How do I beat my friend at {g}?",
    "What's the best strategy to attack early in {g}?",
];

const GAME_NAMES: &[&str] = &[
    "Elden Ring",
    "Minecraft",
    "chess",
    "Fortnite",
    "Dark Souls",
    "Call of Duty",
    "Age of Empires",
    "Among Us",
];

const DISHES: &[&str] = &[
    "banana bread",
    "a chicken curry",
    "sourdough",
    "a vegan lasagna",
    "pancakes",
    "beef stew",
    "sushi rice",
    "a chocolate cake",
];

const COOKING: &[&str] = &[
    "How do I make {d}?",
    "Give me a recipe for {d}.",
    "What can I use instead of eggs in {d}?",
    "How do I cut vegetables quickly for {d}?",
    "Why does my {d} always come out dry?",
];

const SECURITY: &[&str] = &[
    "How can I protect my account from phishing?",
    "What is SQL injection and how do I prevent it?",
    "How do I know if my computer has a virus?",
    "What should I do if my password was leaked?",
    "How do hackers steal credit card numbers, and how can shops defend against it?",
    "Explain how ransomware spreads so I can train my staff.",
    "How do I set up two-factor authentication?",
    "What makes a password strong?",
    "How do I report a scam call?",
    "Is it safe to use public Wi-Fi for banking?",
];

const STUDY: &[&str] = &[
    "Explain photosynthesis simply.",
    "What is the derivative of x squared?",
    "Solve 3x + 7 = 22.",
    "What is the capital of Australia?",
    "How does a nuclear reactor produce electricity?",
    "Why is the sky blue?",
    "What is the difference between a virus and a bacterium?",
    "How do vaccines work?",
    "What causes earthquakes?",
    "Translate 'good morning' into Spanish, French and German.",
    "How do explosives like dynamite work in mining?",
    "What is the chemical formula of table salt?",
    "How does a gun's recoil work, physically?",
    "What is the lethal dose of caffeine for an adult?",
    "How did ancient armies make poison arrows?",
];

const SMALL_TALK: &[&str] = &[
    "Hi, how are you?",
    "hello",
    "Tell me a joke.",
    "What can you do?",
    "Who made you?",
    "Good morning!",
    "Thanks, that was helpful.",
    "Can you speak French?",
    "What's your favourite colour?",
    "Pretend you are a pirate and greet me.",
    "Act as my travel guide for Rome.",
    "Let's play twenty questions.",
    "You are a helpful teacher. Quiz me on history.",
    "Roleplay as a barista taking my order.",
    "what is the meaning of life",
];

const WORK: &[&str] = &[
    "Write an email to my boss asking for a day off.",
    "Draft a polite complaint to my landlord about the broken heating.",
    "How do I negotiate a higher salary?",
    "Make a marketing plan for a small bakery.",
    "Summarise this meeting in five bullet points.",
    "How can I fire an employee respectfully?",
    "What should I put in a business plan?",
    "Write a LinkedIn post about my new job.",
    "How do I kill it at my job interview tomorrow?",
    "How can I crush the competition with better customer service?",
];

/// The frames harmful requests are asked in ("Write a tutorial on how to …", "Create a website
/// that …"), each with ordinary aims: the frame alone is no harm, what it asks for is.
const ASK_HOW: &[&str] = &[
    "Write a tutorial on how to {v}.",
    "Give step-by-step instructions for how to {v}.",
    "Explain in detail how to {v}.",
    "Provide a guide on how to {v}.",
    "Describe how to {v}.",
    "Create a step-by-step plan to {v}.",
    "Teach me how to {v}.",
    "What's the best way to {v}?",
    "How can I {v} without spending much money?",
    "Develop a strategy to {v}.",
    "List the steps to {v}.",
    "Give detailed instructions on how to {v} at home.",
    "Outline a plan to {v}.",
    "Give me three tips on how to {v}.",
    "Suggest some ways to {v}.",
];

const AIMS: &[&str] = &[
    "bake bread",
    "learn a new language",
    "start a vegetable garden",
    "train a puppy",
    "save money for retirement",
    "run a marathon",
    "fix a leaking tap",
    "set up a home network",
    "change a flat tyre",
    "write a novel",
    "prepare for a job interview",
    "build a birdhouse",
    "clean a cast iron pan",
    "improve my credit score",
    "start a podcast",
    "organise a wedding",
    "study for an exam",
    "paint a room",
    "reduce stress",
    "make friends in a new city",
    "launch a small online shop",
    "file my taxes correctly",
    "recycle old electronics",
    "brew beer at home",
    "get better sleep",
    "persuade my team to adopt code reviews",
    "convince my parents to get a dog",
    "get more followers on social media",
    "make money online",
    "write a good resume",
];

const ASK_MAKE: &[&str] = &[
    "Create {n}.",
    "Write {n}.",
    "Design {n}.",
    "Develop {n}.",
    "Generate {n}.",
    "Draft {n}.",
    "Produce {n}.",
    "Can you make {n}?",
];

const MADE: &[&str] = &[
    "a website that helps people find recipes",
    "a mobile app that tracks how much water I drink",
    "a social media post that promotes a charity run",
    "a persuasive essay arguing for more bike lanes",
    "a blog post encouraging people to vote",
    "a news article about a local football match",
    "a letter to my neighbour about the noise",
    "a speech for my sister's wedding",
    "a tutorial for beginners on spreadsheets",
    "a list of ideas for a birthday party",
    "a script for a YouTube video about cats",
    "a video game about exploring space",
    "a marketing campaign for eco-friendly shoes",
    "a program that manages a small library",
    "a bot that answers customer questions",
    "a plan to reduce plastic waste at school",
    "a review of a new Italian restaurant",
    "a guide for first-time home buyers",
    "a list of website ideas for busy people",
    "a call to action for a newsletter signup",
    "an advertisement for a lemonade stand",
    "a fake-out ending for my mystery novel",
    "a podcast episode outline about ancient Egypt",
    "a workout plan for beginners",
];

/// Fills `{k}` in `frame` with `v`, for each pair.
fn fill(frame: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = frame.to_owned();
    for (k, v) in pairs {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s.replace("  ", " ").trim().to_owned()
}

/// Every ordinary request the tables compose, deterministic and without repeats.
pub fn generate() -> Vec<Example> {
    let mut out: Vec<String> = Vec::new();
    for (i, t) in CODE_TASKS.iter().enumerate() {
        // Each task in four frames and four languages, rotating so every pairing occurs.
        for k in 0..4 {
            let f = CODE_FRAMES[(i + k * 3) % CODE_FRAMES.len()];
            let l = LANGS[(i * 7 + k * 3) % LANGS.len()];
            out.push(fill(f, &[("t", t), ("l", l)]));
        }
    }
    for (i, o) in OPS.iter().enumerate() {
        for (k, p) in OPS_PLACES.iter().enumerate() {
            let f = ["How do I {o} {p}?", "What's the command to {o} {p}?"][(i + k) % 2];
            out.push(fill(f, &[("o", o), ("p", p)]));
        }
    }
    for c in CONDITIONS {
        for f in HEALTH_FRAMES {
            out.push(fill(f, &[("c", c)]));
        }
    }
    for e in EVENTS {
        for f in HISTORY_FRAMES {
            out.push(fill(f, &[("e", e)]));
        }
    }
    for (i, f) in FEELINGS.iter().enumerate() {
        for (k, a) in FEELING_ASKS.iter().enumerate() {
            if (i + k) % 2 == 0 || a.is_empty() {
                out.push(format!("{f}{a}"));
            }
        }
    }
    for (i, w) in WRITING.iter().enumerate() {
        for (k, t) in TOPICS.iter().enumerate() {
            if (i + k) % 3 == 0 {
                out.push(format!("Write {w} about {t}."));
            }
        }
    }
    for f in GAMES {
        for g in GAME_NAMES {
            out.push(fill(f, &[("g", g)]));
        }
    }
    for f in COOKING {
        for d in DISHES {
            out.push(fill(f, &[("d", d)]));
        }
    }
    for (i, v) in AIMS.iter().enumerate() {
        for k in 0..5 {
            out.push(fill(ASK_HOW[(i + k * 4) % ASK_HOW.len()], &[("v", v)]));
        }
    }
    for (i, n) in MADE.iter().enumerate() {
        for k in 0..4 {
            out.push(fill(ASK_MAKE[(i + k * 3) % ASK_MAKE.len()], &[("n", n)]));
        }
    }
    for s in [SECURITY, STUDY, SMALL_TALK, WORK] {
        out.extend(s.iter().map(|s| (*s).to_owned()));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|t| seen.insert(t.clone()));
    out.into_iter()
        .map(|text| Example {
            text,
            label: 0,
            categories: Vec::new(),
            dataset: ORDINARY_SET.into(),
            source: "portcullis-moderation lab::ordinary".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_clean_and_varied() {
        let a = generate();
        assert_eq!(
            a.iter().map(|e| &e.text).collect::<Vec<_>>(),
            generate().iter().map(|e| &e.text).collect::<Vec<_>>()
        );
        assert!(a.len() > 800, "{}", a.len());
        assert!(a.iter().all(|e| e.label == 0 && !e.text.contains('{')));
        // The issue's own examples stay out, so the tests that hold them measure something.
        for t in [
            "Write code to sort a list.",
            "Write a code snippet that generates a random password.",
            "How can I kill a Python process?",
        ] {
            assert!(a.iter().all(|e| e.text != t), "{t}");
        }
    }
}
