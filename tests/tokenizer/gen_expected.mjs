// Regenerates the conformance test data from the reference encoders (npm packages pinned in
// package.json; run `npm ci` here first):
//   expected.jsonl     per corpus line: {"n": utf8 bytes, "l2": ids, "l3": ids[, "l3raw": ids]}
//                      l2    llama-tokenizer-js 1.2.2  encode(s, false /*bos*/, true /*prefix*/)
//                      l3    llama3-tokenizer-js 1.2.0 encode(s, {bos: false, eos: false})
//                            (special tokens in the text are parsed, as the reference always does)
//                      l3raw the same with special-token parsing off, only where it differs
//   llama3-vocab.txt   the Llama 3 vocabulary (128,256 tokens, one per line, by id)
// and checks the facts the C test relies on to rebuild the vocabularies without npm:
//   - the Llama 3 merges are exactly every split of a token into two tokens, ordered by
//     (merged id, left id, right id);
//   - the Llama 2 vocabulary equals ../shared/models/tokenizer.bin (spaces as ▁, <s>/</s>)
//     and its merges are every split of a piece into two pieces, ordered by (score of the
//     merged piece descending, left id, right id).
// Usage: node gen_expected.mjs   (DAIS_SHARED overrides the ../shared location)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import llama2 from 'llama-tokenizer-js';
import llama3 from 'llama3-tokenizer-js';

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = process.env.DAIS_SHARED || path.join(here, '..', '..', '..', 'shared');

function fail(msg) {
    console.error('gen_expected: ' + msg);
    process.exit(1);
}

// ---- Llama 3: vocabulary and the merge-order rule ----------------------------------------------
const v3 = llama3.vocabById;
if (v3.length !== 128256) fail(`llama3 vocabulary has ${v3.length} tokens, expected 128256`);
for (const [i, s] of v3.entries())
    if (s.includes('\n') || s.includes('\r')) fail(`llama3 token ${i} contains a line break`);
{
    const id = new Map(v3.map((s, i) => [s, i]));
    const derived = [];
    for (let t = 0; t < 128000; t++) {
        const s = v3[t];
        const cps = Array.from(s);
        for (let k = 1; k < cps.length; k++) {
            const l = cps.slice(0, k).join(''), r = cps.slice(k).join('');
            if (id.has(l) && id.has(r)) derived.push([t, id.get(l), id.get(r)]);
        }
    }
    derived.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    const ref = [...llama3.merges.keys()];
    if (ref.length !== derived.length) fail(`llama3 merges: ${ref.length} vs derived ${derived.length}`);
    for (let i = 0; i < ref.length; i++) {
        const d = v3[derived[i][1]] + ' ' + v3[derived[i][2]];
        if (d !== ref[i]) fail(`llama3 merge ${i}: reference '${ref[i]}', derived '${d}'`);
    }
    console.log(`llama3: ${v3.length} tokens, ${ref.length} merges (derivation rule verified)`);
}
fs.writeFileSync(path.join(here, 'llama3-vocab.txt'), v3.join('\n') + '\n');

// ---- Llama 2: the shared tokenizer.bin is the reference's vocabulary ---------------------------
{
    const buf = fs.readFileSync(path.join(shared, 'models', 'tokenizer.bin'));
    let off = 4;
    const pieces = [], scores = [];
    for (let i = 0; i < 32000; i++) {
        scores.push(buf.readFloatLE(off));
        const len = buf.readInt32LE(off + 4);
        pieces.push(buf.subarray(off + 8, off + 8 + len).toString('utf8').replaceAll(' ', '\u2581'));
        off += 8 + len;
    }
    pieces[1] = '<s>';
    pieces[2] = '</s>';
    const v2 = llama2.vocabById;
    for (let i = 0; i < 32000; i++)
        if (v2[i] !== pieces[i]) fail(`llama2 token ${i}: reference '${v2[i]}', tokenizer.bin '${pieces[i]}'`);
    const id = new Map(pieces.map((s, i) => [s, i]));
    const derived = [];
    for (let t = 259; t < 32000; t++) {
        const cps = Array.from(pieces[t]);
        for (let k = 1; k < cps.length; k++) {
            const l = id.get(cps.slice(0, k).join('')), r = id.get(cps.slice(k).join(''));
            if (l >= 259 && r >= 259) derived.push([scores[t], l, r]);
        }
    }
    derived.sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2] - b[2]);
    const ref = [...llama2.merges.keys()];
    if (ref.length !== derived.length) fail(`llama2 merges: ${ref.length} vs derived ${derived.length}`);
    for (let i = 0; i < ref.length; i++) {
        const d = pieces[derived[i][1]] + ' ' + pieces[derived[i][2]];
        if (d !== ref[i]) fail(`llama2 merge ${i}: reference '${ref[i]}', derived '${d}'`);
    }
    console.log(`llama2: vocabulary equals tokenizer.bin, ${ref.length} merges (rule verified)`);
}

// ---- expected ids ------------------------------------------------------------------------------
const lines = fs.readFileSync(path.join(here, 'corpus.jsonl'), 'utf8').split('\n').filter((l) => l);
const never = /(?!)/g;
const out = [];
let nraw = 0;
for (const line of lines) {
    const [, s] = JSON.parse(line);
    const rec = { n: Buffer.byteLength(s, 'utf8') };
    rec.l2 = llama2.encode(s, false, true);
    rec.l3 = llama3.encode(s, { bos: false, eos: false });
    const raw = llama3.encode(s, { bos: false, eos: false, specialTokenRegex: never });
    if (raw.length !== rec.l3.length || raw.some((x, i) => x !== rec.l3[i])) {
        rec.l3raw = raw;
        nraw++;
    }
    out.push(JSON.stringify(rec));
}
fs.writeFileSync(path.join(here, 'expected.jsonl'), out.join('\n') + '\n');
console.log(`expected.jsonl: ${out.length} strings (${nraw} where parsing special tokens matters)`);
