// After `vite build`: writes a .gz beside each text file of dist/ (the api
// answers it to browsers that accept gzip), prints every asset's size and
// gzipped size, and fails when the JavaScript passes its budget (issue
// #20: 300 KB gzipped in all).
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';

const DIST = new URL('../dist/', import.meta.url).pathname;
const BUDGET_JS_GZ = 300 * 1024;
const TEXT = /\.(js|css|html|json|svg)$/;

function walk(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

let jsGz = 0;
const rows = [];
for (const f of walk(DIST).filter((f) => TEXT.test(f))) {
  const raw = readFileSync(f);
  const gz = gzipSync(raw, { level: 9 });
  writeFileSync(f + '.gz', gz);
  if (f.endsWith('.js')) jsGz += gz.length;
  rows.push([relative(DIST, f), raw.length, gz.length]);
}
const kb = (b) => (b / 1024).toFixed(1).padStart(7) + ' KB';
for (const [f, raw, gz] of rows.sort((a, b) => b[2] - a[2])) console.log(`${kb(raw)} ${kb(gz)} gz  ${f}`);
console.log(`budget: JavaScript ${kb(jsGz).trim()} gzipped of ${BUDGET_JS_GZ / 1024} KB`);
if (jsGz > BUDGET_JS_GZ) {
  console.error('budget: JavaScript over budget');
  process.exit(1);
}
