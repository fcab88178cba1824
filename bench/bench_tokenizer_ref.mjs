// Reference side of bench_tokenizer: times the JavaScript encoders the conformance suite
// checks against (llama-tokenizer-js 1.2.2, llama3-tokenizer-js 1.2.0, installed by
// `npm ci` in tests/tokenizer) on the same inputs, with the same options as the C side:
// Llama 2 without BOS and with the SentencePiece leading space, Llama 3 without BOS/EOS
// (special tokens parsed, as the reference always does).
//
//   node bench/bench_tokenizer_ref.mjs ENGLISH.txt CORPUS.jsonl [reps]
//
// Prints one JSON object per line: {"vocab", "input", "bytes", "tokens", "seconds"}, seconds
// being the median of `reps` timed passes after one warm-up pass.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const mods = path.join(here, '..', 'tests', 'tokenizer', 'node_modules');
const load = async (p) => (await import(pathToFileURL(path.join(mods, p)).href)).default;
let llama2, llama3;
try {
    llama2 = await load('llama-tokenizer-js/llama-tokenizer.js');
    llama3 = await load('llama3-tokenizer-js/bundle/llama3-tokenizer-with-baked-data.js');
} catch (e) {
    console.error(`bench_tokenizer_ref: reference encoders missing (cd tests/tokenizer && npm ci): ${e.message}`);
    process.exit(2);
}

const [englishPath, corpusPath, repsArg] = process.argv.slice(2);
const reps = Number(repsArg || 3);
const english = fs.readFileSync(englishPath, 'utf8');
const corpus = fs.readFileSync(corpusPath, 'utf8').split('\n').filter((l) => l)
    .map((l) => JSON.parse(l)[1]);
const corpusBytes = corpus.reduce((a, s) => a + Buffer.byteLength(s, 'utf8'), 0);
// The paragraphs, split as the C side splits them: after each "\n\n".
const paragraphs = english.split(/(?<=\n\n)/);

const enc = {
    llama2: (s) => llama2.encode(s, false, true),
    llama3: (s) => llama3.encode(s, { bos: false, eos: false }),
};

function time(fn) {
    fn(); // warm-up (JIT, lazy tables)
    const t = [];
    let tokens = 0;
    for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint();
        tokens = fn();
        t.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    t.sort((a, b) => a - b);
    return { tokens, seconds: t[Math.floor(t.length / 2)] };
}

for (const vocab of ['llama2', 'llama3']) {
    const e = enc[vocab];
    let r = time(() => corpus.reduce((a, s) => a + e(s).length, 0));
    console.log(JSON.stringify({ vocab, input: 'corpus', bytes: corpusBytes, ...r }));
    r = time(() => e(english).length);
    console.log(JSON.stringify({ vocab, input: 'english', bytes: Buffer.byteLength(english, 'utf8'), ...r }));
    r = time(() => paragraphs.reduce((a, s) => a + e(s).length, 0));
    console.log(JSON.stringify({ vocab, input: 'paragraphs', bytes: Buffer.byteLength(english, 'utf8'), ...r }));
}
