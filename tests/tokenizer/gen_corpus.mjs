// Writes corpus.jsonl: the tokenizer conformance corpus, one JSON string per line.
//
// Deterministic: a fixed-seed PRNG and hand-written fragments, no Math.random, no locale- or
// ICU-dependent calls (no normalize(), no toUpperCase() outside ASCII), so every Node.js
// version writes the same bytes. Characters come only from blocks assigned by Unicode 14,
// because the C tokenizer's PCRE2 (10.42) knows Unicode 14 while Node's ICU is newer; letters
// added since would be classified differently (see README.md).
//
// Usage: node gen_corpus.mjs [out.jsonl]     (default: corpus.jsonl beside this script)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outPath = process.argv[2] || path.join(here, 'corpus.jsonl');

// ---- PRNG (xorshift64*, BigInt-free 32-bit variant: mulberry32) ----------------------------
let state = 0x6d2b79f5;
function rnd() {
    state = (state + 0x6d2b79f5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const ri = (n) => Math.floor(rnd() * n);
const pick = (a) => a[ri(a.length)];
const cp = (...c) => String.fromCodePoint(...c);
function rangeChars(lo, hi) {
    const a = [];
    for (let c = lo; c <= hi; c++) a.push(String.fromCodePoint(c));
    return a;
}
function randFrom(chars, n) {
    let s = '';
    for (let i = 0; i < n; i++) s += pick(chars);
    return s;
}

const corpus = [];
const add = (s, cat) => corpus.push([cat, s]);

// ---- fragments ------------------------------------------------------------------------------
const WORDS = ('the of and to a in is it you that he was for on are with as I his they be at one ' +
    'have this from or had by hot word but what some we can out other were all there when up use ' +
    'your how said an each she which do their time if will way about many then them write would ' +
    'like so these her long make thing see him two has look more day could go come did number ' +
    'sound no most people my over know water than call first who may down side been now find ' +
    'any new work part take get place made live where after back little only round man year came ' +
    'show every good me give our under name very through just form sentence great think say help ' +
    'low line differ turn cause much mean before move right boy old too same tell does set three ' +
    'want air well also play small end put home read hand port large spell add even land here ' +
    'must big high such follow act why ask men change went light kind off need house picture try ' +
    'us again animal point mother world near build self earth father head stand own page should ' +
    'country found answer school grow study still learn plant cover food sun four between state ' +
    'keep eye never last let thought city tree cross farm hard start might story saw far sea draw ' +
    'left late run while press close night real life few north open seem together next white ' +
    'children begin got walk example ease paper group always music those both mark often letter ' +
    'until mile river car feet care second book carry took science eat room friend began idea ' +
    'fish mountain stop once base hear horse cut sure watch color face wood main enough plain ' +
    'girl usual young ready above ever red list though feel talk bird soon body dog family direct ' +
    'pose leave song measure door product black short numeral class wind question happen complete ' +
    'ship area half rock order fire south problem piece told knew pass since top whole king space ' +
    'heard best hour better true during hundred five remember step early hold west ground interest ' +
    'reach fast verb sing listen six table travel less morning ten simple several vowel toward war ' +
    'lay against pattern slow center love person money serve appear road map rain rule govern pull ' +
    'cold notice voice unit power town fine certain fly fall lead cry dark machine note wait plan ' +
    'figure star box noun field rest correct able pound done beauty drive stood contain front teach ' +
    'week final gave green oh quick develop ocean warm free minute strong special mind behind clear ' +
    'tail produce fact street inch multiply nothing course stay wheel full force blue object decide ' +
    'surface deep moon island foot system busy test record boat common gold possible plane stead ' +
    'dry wonder laugh thousand ago ran check game shape equate miss brought heat snow tire bring ' +
    'yes distant fill east paint language among grabbed llama tokenizer serving cluster').split(' ');
const NAMES = ['Lily', 'Tim', 'Anna', 'Mr. Smith', 'Dr. Watson', 'O\'Neil', 'McDonald', 'Zoë',
    'François', 'São Paulo', 'New York', 'GPT-4', 'Llama-2-7B', 'iPhone', 'macOS', 'NASA'];
const PUNCT = ['.', ',', '!', '?', ';', ':', '...', ' -', ' —', '–', '"', '\'', '(', ')', '[', ']'];

function sentence() {
    const n = 3 + ri(14);
    const w = [];
    for (let i = 0; i < n; i++) {
        let x = rnd() < 0.08 ? pick(NAMES) : pick(WORDS);
        if (i === 0) x = x[0].toUpperCase() + x.slice(1);
        if (rnd() < 0.03) x = x.toUpperCase();
        if (rnd() < 0.1 && i < n - 1) x += pick([',', ';', ':', ' -']);
        w.push(x);
    }
    let s = w.join(' ') + pick(['.', '.', '.', '!', '?', '...', '."', '!\'']);
    if (rnd() < 0.1) s = '"' + s + '"';
    if (rnd() < 0.08) s = '(' + s + ')';
    return s;
}
function paragraph(k) {
    const a = [];
    for (let i = 0; i < k; i++) a.push(sentence());
    return a.join(pick([' ', ' ', '  ', '\n']));
}

const PROSE = [
    'Once upon a time',
    'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.',
    'The quick brown fox jumps over the lazy dog.',
    'It was the best of times, it was the worst of times.',
    'Hello world!',
    'Hello, World!',
    'hello world',
    'This is a test sentence.',
    'grabbed',
    ' grabbed',
    '           grabbed',
    'The llama (/ˈlɑːmə/; 🦙Spanish pronunciation: [ˈʎama]) (Lama glama) is a domesticated South ' +
        'American camelid, widely used as a meat and pack animal by Andean cultures since the ' +
        'pre-Columbian era.',
    'In 1492, Columbus sailed the ocean blue.',
    'E = mc^2 is Einstein\'s famous equation; F = ma is Newton\'s.',
    'Mr. and Mrs. Dursley, of number four, Privet Drive, were proud to say that they were ' +
        'perfectly normal, thank you very much.',
    'A-B-C, 1-2-3, do-re-mi.',
    'U.S.A., e.g., i.e., etc., vs., a.m., p.m.',
    'well-known state-of-the-art twenty-one mother-in-law',
    'email me at someone@example.com or visit https://example.org/path?q=1&r=two#frag',
    '#hashtag @mention $100 50% 3*4=12 a/b c\\d ~tilde `code` ^caret |pipe| {braces} <angle>',
];

const CODE = [
    'int main(int argc, char **argv)\n{\n    printf("hello, world\\n");\n    return 0;\n}\n',
    'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
    'for (let i = 0; i < 10; i++) {\n\tconsole.log(`i = ${i}`);\n}',
    '{"name": "dais", "version": "0.1.0", "tags": ["llm", "serving"], "n": 42, "ok": true}',
    '<html>\n  <body>\n    <p class="x">Hi &amp; bye</p>\n  </body>\n</html>',
    '#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.c; do gcc -c "$f" -o "${f%.c}.o"; done',
    'SELECT id, name FROM users WHERE age >= 18 AND name LIKE \'%son\' ORDER BY id DESC;',
    'fn main() {\n    let v: Vec<i32> = (0..10).map(|x| x * x).collect();\n    println!("{:?}", v);\n}',
    'x = [i**2 for i in range(10) if i % 2 == 0]  # squares\nprint(x)',
    'if (a && b || !c) { *p++ = q->r[i]; } else if (x != y) { x <<= 2; y >>= 3; }',
    '    return self._cache.get(key, default)\n',
    '\t\tcase 0x1F: goto fail;\n',
    'std::vector<std::string> v{"a", "b"}; auto it = v.begin();',
    'const re = /^[a-z0-9_.+-]+@[a-z0-9-]+\\.[a-z0-9-.]+$/i;',
    'a == b !== c <= d >= e => f -> g :: h ... i ?? j ?. k',
    '/* comment */ // line comment\n# python comment\n-- sql comment',
    'CMAKE_C_FLAGS="-O2 -Wall -Wextra" cmake -S . -B build && cmake --build build -j2',
    'diff --git a/x.c b/x.c\n@@ -1,3 +1,4 @@\n-old line\n+new line\n context',
    '0x7fffffff 0b1010 0o777 1e-9 3.14159f 1_000_000 .5 5.',
    'key: value\nlist:\n  - one\n  - two\nnested:\n    deep: true\n',
];

const CONTRACTIONS = ['don\'t', 'DON\'T', 'Don\'t', 'I\'LL', 'I\'ll', 'i\'Ll', 'we\'re', 'WE\'RE',
    'We\'Re', 'they\'ve', 'THEY\'VE', 'she\'d', 'SHE\'D', 'it\'s', 'IT\'S', 'It\'S', 'I\'m',
    'I\'M', 'can\'t', 'won\'t', 'shouldn\'t\'ve', 'y\'all', 'rock \'n\' roll', '\'tis',
    'the dog\'s bone', 'the dogs\' bones', 'O\'Reilly', 'it’s (curly)', 'don’t', '\'s', '\'t',
    '\'re', '\'ve', '\'m', '\'ll', '\'d', '\'S', '\'LL', '\'x', '\'', '\'\'', 'a\'b\'c\'d',
    'James\'s', '\'90s', 'rock\'n\'roll', 'ma\'am'];

const LATIN = ['café', 'naïve', 'résumé', 'façade', 'Ångström', 'Zürich', 'Straße', 'Größe',
    'mañana', 'niño', 'São João', 'coração', 'Łódź', 'źdźbło', 'Příliš žluťoučký kůň úpěl ' +
        'ďábelské ódy', 'Tiếng Việt có dấu', 'Nguyễn Thị Minh Khai', 'İstanbul ılık şehir',
    'Þórður Ægir Ólafsson', 'ÉCOLE ÉLÉMENTAIRE', 'crème brûlée', 'Österreich', 'Ærøskøbing',
    'Dvořák', 'Señor Müller-Lüdenscheidt', 'ǅemal', 'ĳsland', 'œuvre', 'ﬁnance ﬂow'];
const GREEK = ['Καλημέρα κόσμε', 'Η γρήγορη καφέ αλεπού', 'ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ',
    'αβγδεζηθικλμνξοπρστυφχψω ς', 'Ἐν ἀρχῇ ἦν ὁ λόγος', 'π ≈ 3.14159, Σ x_i, Δt, λ = 1/μ'];
const CYRILLIC = ['Привет, мир!', 'Съешь же ещё этих мягких французских булок, да выпей чаю.',
    'Україна, ґанок, їжак, є', 'Србија, ђак, ћирилица, џеп', 'ЗДРАВСТВУЙТЕ', 'ёлка Ёж',
    'Москва 2024 года'];
const CJK = ['你好，世界！', '我爱北京天安门', '中华人民共和国成立于一九四九年', '機器學習與自然語言處理',
    '東京は日本の首都です。', 'こんにちは世界', 'カタカナとひらがなと漢字', 'ﾊﾝｶｸｶﾀｶﾅ',
    '안녕하세요 세계', '대한민국의 수도는 서울입니다.', '镇', '一二三四五六七八九十', '「引用」と『二重』',
    '全角：ＡＢＣ１２３！？', '〇〆〤〥', '𠀀𠀁𠜎', '龘靐齉'];
const ARABIC = ['مرحبا بالعالم', 'اللغة العربية جميلة', 'السلام عليكم ورحمة الله',
    'الرقم ١٢٣٤٥٦٧٨٩٠', 'שלום עולם', 'עברית', 'سلام دنیا، فارسی', 'ﷺ ﷲ', 'كَتَبَ الوَلَدُ الدَّرْسَ'];
const OTHER_SCRIPTS = ['नमस्ते दुनिया', 'हिन्दी भाषा', '०१२३४५६७८९', 'สวัสดีชาวโลก',
    'ภาษาไทย', 'გამარჯობა', 'Բարեւ', 'ሰላም', 'வணக்கம்', 'ಕನ್ನಡ', 'বাংলা', 'ᚠᚢᚦᚨᚱᚲ', 'ꦗꦮ',
    'ᠮᠣᠩᠭᠣᠯ', 'ພາສາລາວ', 'မြန်မာ', 'ខ្មែរ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝟙𝟚𝟛', 'Ⅻ ⅻ ⅓ ½ ¾ ² ³ ⁴ ₅'];
const EMOJI = ['🦙', '🦙Ꙋ', 'Ꙋ🦙', '😀😃😄😁', '👍', '👍🏽', '👍🏿👍🏻', '👨‍👩‍👧‍👦', '👩‍💻',
    '🏳️‍🌈', '🏴‍☠️', '🇫🇷🇩🇪🇯🇵🇺🇸', '1️⃣2️⃣#️⃣', '❤️', '❤', '☺️', '✌🏾', '🧑🏽‍🤝‍🧑🏿',
    '👁️‍🗨️', '🐕‍🦺', '🫠🫶', '🤷‍♀️🤷‍♂️', '👨🏻‍❤️‍💋‍👨🏼', '🔥🔥🔥 lit', 'I ❤️ NY', '★☆✓✗→←↑↓',
    '♠♥♦♣', '∀x∈ℝ: x²≥0', '€£¥₹₿$¢'];
const COMBINING = ['e\u0301', 'cafe\u0301', 'n\u0303', 'a\u0308\u0304', 'A\u030A',
    'Z\u0351\u0352\u0357\u035b\u0346\u033d\u0313a\u0344\u0350\u0307l\u0363\u036cg\u0309o',
    'x\u0332\u0332\u0332', 'o\u0336', '\u0301leading combining', 'q\u0307\u0323',
    'ệ (precomposed) vs e\u0323\u0302', 'भा\u093c', 'क्\u200dष', 'ก\u0e34\u0e49', 'ﬀ\u0301',
    'a\u20dd', '1\u20e3', 'e\u0301\u0301\u0301\u0301\u0301\u0301'];
const SPACES = [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\r\n', '\r', ' \n', '\n ', ' \t ',
    '\u00a0', '\u2003', '\u3000', '\u200b', '\u2028', '\u2029', '\u0085', '\ufeff', '\u000b',
    '\u000c', '\u1680', '\u202f', '\u205f', '\u180e'];
const SPECIAL_LIKE = ['<s>', '</s>', '<unk>', '<s>Hello</s>', '<|begin_of_text|>',
    '<|end_of_text|>', '<|eot_id|>', '<|eom_id|>', '<|start_header_id|>user<|end_header_id|>',
    '<|python_tag|>', '<|finetune_right_pad_id|>', '<|reserved_special_token_0|>',
    '<|reserved_special_token_5|>', '<|reserved_special_token_247|>',
    '<|reserved_special_token_248|>', '<|reserved_special_token_250|>',
    '<|reserved_special_token_00|>', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<||>',
    '< |eot_id| >', '<<|eot_id|>>', '<|eot_id', 'eot_id|>', '<|EOT_ID|>', '[INST]', '[/INST]',
    '<<SYS>>', '<</SYS>>', '<0x0A>', '<0xFF>', '▁', '▁▁hello', '<|begin_of_text|><|begin_of_text|>',
    '<|eot_id|><|eot_id|>x', 'a<|eot_id|>b', ' <|eot_id|> ', '\n<|eot_id|>\n',
    '<|start_header_id|>assistant<|end_header_id|>\n\nHi there!<|eot_id|>'];

// Unicode 14-era character pools for random text.
const POOLS = {
    latin1: rangeChars(0xc0, 0xff).filter((c) => c !== '×' && c !== '÷'),
    latinExtA: rangeChars(0x100, 0x17f),
    greek: rangeChars(0x3b1, 0x3c9).concat(rangeChars(0x391, 0x3a1), rangeChars(0x3a3, 0x3a9)),
    cyrillic: rangeChars(0x410, 0x44f),
    cjk: rangeChars(0x4e00, 0x9fa5),
    hiragana: rangeChars(0x3041, 0x3093),
    katakana: rangeChars(0x30a1, 0x30f6),
    hangul: rangeChars(0xac00, 0xd7a3),
    arabic: rangeChars(0x621, 0x64a),
    hebrew: rangeChars(0x5d0, 0x5ea),
    devanagari: rangeChars(0x915, 0x939),
    emoji: rangeChars(0x1f600, 0x1f64f).concat(rangeChars(0x1f300, 0x1f3f0)),
    digits: rangeChars(0x30, 0x39),
    ascii: rangeChars(0x20, 0x7e),
    controls: rangeChars(0x01, 0x1f).concat(['\u007f']),
    symbols: rangeChars(0x2190, 0x21ff).concat(rangeChars(0x2200, 0x22ff)),
};

function digits(n) {
    let s = String(1 + ri(9));
    for (let i = 1; i < n; i++) s += String(ri(10));
    return s;
}

// ---- categories -----------------------------------------------------------------------------
add('', 'empty');

for (const s of PROSE) add(s, 'prose');
for (let i = 0; i < 260; i++) add(i % 3 === 0 ? paragraph(1 + ri(6)) : sentence(), 'prose');

for (const s of CODE) add(s, 'code');
const IDENTS = ['foo', 'bar', 'baz', 'tmp', 'buf', 'len', 'n_vocab', 'dais_tokenize', 'i', 'j',
    'ctx', 'self', 'thisIsCamelCase', 'SCREAMING_SNAKE', 'x1', 'y_2', '_private', '__dunder__'];
for (let i = 0; i < 140; i++) {
    const a = pick(IDENTS), b = pick(IDENTS), c = pick(IDENTS);
    const indent = pick(['', '    ', '        ', '\t', '\t\t', '  ']);
    const forms = [
        `${indent}${a} = ${b}(${c}, ${digits(1 + ri(4))});`,
        `${indent}if (${a} ${pick(['==', '!=', '<=', '>=', '<', '>', '&&', '||'])} ${b}) {\n${indent}    return ${c};\n${indent}}`,
        `${indent}def ${a}(${b}, ${c}=None):\n${indent}    """${sentence()}"""\n${indent}    pass`,
        `${indent}// ${sentence()}\n${indent}${a}->${b}[${c}] += 0x${digits(2)}${pick(['', 'u', 'UL'])};`,
        `${indent}"${a}": [${digits(ri(5) + 1)}, "${b}", {"${c}": null}],`,
        `${indent}${a}.${b}().${c}(lambda x: x ${pick(['+', '*', '**', '//', '%'])} ${digits(1 + ri(3))})`,
    ];
    add(pick(forms), 'code');
}

for (let n = 1; n <= 60; n++) add(digits(n), 'numbers');
for (let i = 0; i < 120; i++) {
    const forms = [
        () => digits(60 + ri(200)),
        () => `${digits(1 + ri(6))}.${digits(1 + ri(12))}`,
        () => `${digits(1 + ri(3))},${digits(3).padStart(3, '0')},${digits(3).padStart(3, '0')}`,
        () => `+1 (${digits(3)}) ${digits(3)}-${digits(4)}`,
        () => `${2000 + ri(30)}-${String(1 + ri(12)).padStart(2, '0')}-${String(1 + ri(28)).padStart(2, '0')}T${ri(24)}:${ri(60)}:00Z`,
        () => `${digits(1 + ri(3))}e-${digits(1 + ri(2))} ${digits(2)}E+${digits(2)}`,
        () => `v${ri(10)}.${ri(30)}.${ri(100)}-rc${ri(5)}`,
        () => `abc${digits(5 + ri(10))}def${digits(3)}`,
        () => `${digits(4)} ${digits(4)} ${digits(4)} ${digits(4)}`,
        () => `-${digits(1 + ri(8))} +${digits(1 + ri(8))} ±${digits(2)}`,
        () => `${randFrom(rangeChars(0x660, 0x669), 3 + ri(10))}`,
        () => `${randFrom(rangeChars(0x966, 0x96f), 3 + ri(10))}`,
        () => `${randFrom(rangeChars(0xff10, 0xff19), 3 + ri(10))}`,
        () => `${digits(3)}${pick(['½', '²', '³', '¼', 'Ⅳ', '①', '⑩'])}${digits(2)}`,
        () => `0x${randFrom('0123456789abcdef'.split(''), 8 + ri(24))}`,
    ];
    add(pick(forms)(), 'numbers');
}

for (const s of CONTRACTIONS) add(s, 'contractions');
for (let i = 0; i < 100; i++) {
    const w = pick(CONTRACTIONS);
    add(`${sentence().slice(0, -1)} ${w} ${pick(WORDS)}${pick(PUNCT)}`, 'contractions');
}

for (const s of SPACES) add(s, 'whitespace');
for (let i = 0; i < 160; i++) {
    let s = '';
    const k = 1 + ri(6);
    for (let j = 0; j < k; j++) {
        const run = pick([' ', '\t', '\n', '\r\n', ' \t', '\u00a0', '\u3000', '\u2003']);
        s += run.repeat(1 + ri(j % 2 ? 3 : 40));
        if (rnd() < 0.7) s += pick(WORDS);
    }
    add(s, 'whitespace');
}
for (let n = 1; n <= 40; n++) add(' '.repeat(n) + 'x', 'whitespace');
for (let n = 1; n <= 20; n++) add('a' + ' '.repeat(n) + 'b' + ' '.repeat(n), 'whitespace');

for (let i = 0; i < 120; i++) {
    const lead = pick(SPACES).repeat(1 + ri(4));
    const trail = pick(SPACES).repeat(1 + ri(4));
    const body = pick([sentence(), pick(WORDS), pick(LATIN), pick(CJK), pick(EMOJI)]);
    add(pick([lead + body, body + trail, lead + body + trail]), 'edges');
}

for (const s of LATIN) add(s, 'latin');
for (const s of GREEK) add(s, 'greek');
for (const s of CYRILLIC) add(s, 'cyrillic');
for (const s of CJK) add(s, 'cjk');
for (const s of ARABIC) add(s, 'arabic');
for (const s of OTHER_SCRIPTS) add(s, 'scripts');
for (const s of EMOJI) add(s, 'emoji');
for (const s of COMBINING) add(s, 'combining');
const scriptPools = [['latin', ['latin1', 'latinExtA']], ['greek', ['greek']],
    ['cyrillic', ['cyrillic']], ['cjk', ['cjk', 'hiragana', 'katakana', 'hangul']],
    ['arabic', ['arabic', 'hebrew']], ['scripts', ['devanagari']], ['emoji', ['emoji']]];
for (let i = 0; i < 420; i++) {
    const [cat, pools] = scriptPools[i % scriptPools.length];
    const words = [];
    const k = 1 + ri(8);
    for (let j = 0; j < k; j++) {
        let w = randFrom(POOLS[pick(pools)], 1 + ri(cat === 'cjk' ? 12 : 8));
        if (cat === 'latin' && rnd() < 0.5) w = pick(WORDS) + w;
        words.push(w);
    }
    let s = words.join(pick([' ', ' ', '', ', ', '\n', '。', '、']));
    if (rnd() < 0.3) s = sentence() + ' ' + s;
    if (rnd() < 0.2) s += pick(PUNCT);
    add(s, cat);
}
for (let i = 0; i < 80; i++) {
    // ZWJ sequences built from parts, skin tones and variation selectors.
    const people = [0x1f468, 0x1f469, 0x1f467, 0x1f466, 0x1f9d1];
    const tones = [0x1f3fb, 0x1f3fc, 0x1f3fd, 0x1f3fe, 0x1f3ff];
    let s = '';
    const k = 1 + ri(4);
    for (let j = 0; j < k; j++) {
        if (j) s += '\u200d';
        s += cp(pick(people));
        if (rnd() < 0.4) s += cp(pick(tones));
        if (rnd() < 0.2) s += '\ufe0f';
    }
    add(rnd() < 0.5 ? s : `${pick(WORDS)} ${s} ${pick(WORDS)}`, 'emoji');
}
for (let i = 0; i < 80; i++) {
    const marks = rangeChars(0x300, 0x36f);
    let s = '';
    const k = 2 + ri(10);
    for (let j = 0; j < k; j++) {
        s += pick(['a', 'e', 'o', 'n', 'Z', 'x', 'и', 'α', ' ']);
        for (let m = ri(4); m > 0; m--) s += pick(marks);
    }
    add(s, 'combining');
}

const LONG = [
    'Pneumonoultramicroscopicsilicovolcanoconiosis',
    'Donaudampfschifffahrtsgesellschaftskapitänswitwe',
    'Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch',
    'supercalifragilisticexpialidocious'.repeat(20),
    'a'.repeat(3000),
    'ab'.repeat(1500),
    '!'.repeat(1000),
    '='.repeat(700),
    '-'.repeat(257),
    ' '.repeat(1000),
    '\n'.repeat(300),
    '\t'.repeat(200),
    'ha'.repeat(800),
    digits(2000),
    '我'.repeat(500),
    '🦙'.repeat(300),
    'https://example.com/' + 'very/long/path/'.repeat(60) + '?x=' + 'y'.repeat(200),
];
for (const s of LONG) add(s, 'long');
for (let i = 0; i < 60; i++) {
    const pool = pick([POOLS.ascii.filter((c) => /[a-z]/.test(c)), POOLS.latin1, POOLS.cyrillic,
        POOLS.cjk, POOLS.hangul, POOLS.greek]);
    add(randFrom(pool, 200 + ri(1800)), 'long');
}
for (let i = 0; i < 20; i++) {
    const b64 = rangeChars(0x41, 0x5a).concat(rangeChars(0x61, 0x7a), rangeChars(0x30, 0x39),
        ['+', '/']);
    add(randFrom(b64, 300 + ri(1500)) + '==', 'long');
}

for (const s of SPECIAL_LIKE) add(s, 'special');
for (let i = 0; i < 120; i++) {
    const parts = [];
    const k = 1 + ri(5);
    for (let j = 0; j < k; j++)
        parts.push(rnd() < 0.5 ? pick(SPECIAL_LIKE) : pick([sentence(), pick(WORDS), pick(CJK),
            pick(EMOJI), ' ', '\n']));
    add(parts.join(pick(['', ' ', '\n'])), 'special');
}

for (let i = 0; i < 60; i++) add(randFrom(POOLS.controls.concat(POOLS.ascii), 5 + ri(60)),
    'controls');
for (let i = 0; i < 40; i++) add(randFrom(POOLS.symbols.concat(POOLS.ascii), 5 + ri(60)), 'symbols');

// Mixed: everything at once.
const FRAGMENTS = [...PROSE, ...CODE, ...CONTRACTIONS, ...LATIN, ...GREEK, ...CYRILLIC, ...CJK,
    ...ARABIC, ...OTHER_SCRIPTS, ...EMOJI, ...COMBINING, ...SPACES, ...SPECIAL_LIKE];
for (let i = 0; i < 360; i++) {
    const k = 2 + ri(6);
    let s = '';
    for (let j = 0; j < k; j++) s += pick(FRAGMENTS) + (rnd() < 0.5 ? pick(SPACES) : '');
    add(s, 'mixed');
}

// ---- write ----------------------------------------------------------------------------------
const lines = corpus.map(([cat, s]) => JSON.stringify([cat, s]));
fs.writeFileSync(outPath, lines.join('\n') + '\n');
const cats = {};
for (const [cat] of corpus) cats[cat] = (cats[cat] || 0) + 1;
console.log(`wrote ${corpus.length} strings to ${outPath}`);
console.log(JSON.stringify(cats));
