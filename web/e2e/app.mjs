// End-to-end tests of the dashboard (issue #20) in Debian's Chromium driven
// by Playwright, against the demo's running api and edge:
//
//   deploy/local/app-e2e.sh        (after deploy/local/demo.sh)
//
// - signs in as the demo admin (email + password; a TOTP account is asked
//   its code), and as the operator with its key (agency view);
// - every page shows the API's numbers: the cards equal what the API
//   answers for the same query, read independently with the same session;
// - creates a link in the form (live preview updates as it is typed) and
//   finds it served by the edge;
// - a viewer sees no create, edit, archive or export control, and a
//   create URL typed by hand answers "not allowed";
// - axe-core finds no serious or critical violation on any page, at desktop
//   and phone widths; no Content-Security-Policy violation, no console error;
// - first load of the overview (navigation to numbers on screen) and the
//   JavaScript transferred are printed (measured, not asserted: the machine
//   is shared).
// Screenshots of every page go to $ARTIFACTS (default .state/artifacts/app).
import { readFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const STATE = process.env.SMARTLINKS_STATE_DIR ?? new URL('../../.state', import.meta.url).pathname;
const API = process.env.API ?? 'http://127.0.0.1:8081';
const EDGE = process.env.EDGE ?? 'http://127.0.0.1:8080';
const ARTIFACTS = process.env.ARTIFACTS ?? `${STATE}/artifacts/app`;
const logins = JSON.parse(readFileSync(`${STATE}/app-logins.json`, 'utf8'));
const operatorKey = readFileSync(`${STATE}/api-operator-key`, 'utf8').trim();
mkdirSync(ARTIFACTS, { recursive: true });

let failures = 0;
const ok = (what) => console.log(`  ok    ${what}`);
function check(cond, what, detail = '') {
  if (cond) ok(what);
  else {
    failures++;
    console.log(`  FAIL  ${what}${detail ? `: ${detail}` : ''}`);
  }
}
const digits = (s) => Number(String(s).replace(/[^0-9]/g, ''));

/** GET `url` with a Host header (fetch may not set one): { status, body }. */
function getWithHost(url, host) {
  return new Promise((resolve) => {
    http
      .get(url, { headers: { Host: host } }, (r) => {
        let body = '';
        r.on('data', (c) => (body += c));
        r.on('end', () => resolve({ status: r.statusCode, body }));
      })
      .on('error', () => resolve({ status: 0, body: '' }));
  });
}

/** RFC 6238 code (SHA-1, 6 digits, 30 s) of a base32 secret at time `ms`. */
function totp(secret, ms = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret.replace(/=+$/, '')) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 30_000)));
  const mac = createHmac('sha1', key).update(counter).digest();
  const off = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(off) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** Collects the page's answers whose URL passes `test`. */
function answers(page, test) {
  const seen = [];
  page.on('response', (r) => test(r.url()) && seen.push(r));
  return seen;
}

/** Of the collected analytics answers, the one for the range shown (the latest `to`). */
function current(seen) {
  const to = (r) => new URL(r.url()).searchParams.get('to') ?? '';
  return seen.reduce((a, b) => (to(b) > to(a) ? b : a));
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

/** A fresh context and page that records CSP violations and console errors. */
async function open(viewport = { width: 1366, height: 900 }) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.problems = [];
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp = (window.__csp || []).concat(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('console', (m) => m.type() === 'error' && page.problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  return { context, page };
}

async function signIn(page, { email, password }) {
  await page.goto(`${API}/app/`);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

/** axe-core on the page as it is: serious and critical violations fail. */
async function axe(page, name) {
  const result = await page.evaluate(`${AXE}; axe.run(document, { resultTypes: ['violations'] })`);
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(bad.length === 0, `${name}: no serious accessibility violation (axe-core ${result.testEngine.version})`,
    bad.map((v) => `${v.id} (${v.nodes.length}: ${v.nodes[0].target.join(' ')})`).join('; '));
}

async function settle(page, name, { shot = true } = {}) {
  await page.waitForLoadState('networkidle');
  await page.locator('[aria-busy="true"]').waitFor({ state: 'detached' }).catch(() => {});
  if (shot) await page.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage: true });
  await axe(page, name);
  const csp = await page.evaluate(() => window.__csp || []);
  check(csp.length === 0, `${name}: no CSP violation`, csp.join('; '));
  check(page.problems.length === 0, `${name}: no console error`, page.problems.join('; '));
  page.problems.length = 0;
}

/** The API's answer to what the page asked for (same URL, same bearer). */
async function sameQuery(page, response) {
  const token = await page.evaluate(() => sessionStorage.getItem('smartlinks.token'));
  const r = await fetch(response.url(), { headers: { Authorization: `Bearer ${token}` } });
  return r.json();
}

try {
  // ---- Sign-in page and the admin's overview ----
  console.log('dashboard: admin');
  const { context, page } = await open();
  await page.goto(`${API}/app/`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await settle(page, '00-login');
  await page.getByLabel('Email').fill(logins.admin.email);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('alert').waitFor();
  check((await page.getByRole('alert').textContent()).length > 0, 'a wrong password is refused with a message');
  page.problems.length = 0; // the refused login's 401 is logged by the browser

  const overviews = answers(page, (u) => u.includes('/v1/analytics/overview?'));
  await signIn(page, logins.admin);
  await page.getByTestId('views').waitFor();
  await page.locator('.u-wrap, .chart canvas').first().waitFor();
  await page.locator('.map path.hit').first().waitFor();
  const api = await sameQuery(page, current(overviews));
  const card = async (id) => digits(await page.getByTestId(id).locator('.card-value').textContent());
  check(api.views > 0, `the demo's views reach the overview (${api.views})`);
  check((await card('views')) === api.views, 'views card = API', `${await card('views')} vs ${api.views}`);
  check((await card('clicks')) === api.clicks, 'click-outs card = API', `${await card('clicks')} vs ${api.clicks}`);
  check((await card('visitors')) === api.unique_visitors, 'unique visitors card = API');
  check((await card('bots')) === api.bots, 'bots card = API');
  const countries = await page.locator('.map path.hit').count();
  check(countries === Math.min(api.top_countries.length, 250) || countries >= api.top_countries.length - 1,
    `the world map colours the countries with views (${countries})`);
  await settle(page, '01-overview');

  // First load: a new browser context (empty cache) in the signed-in
  // session, from navigation to the views card's number on screen.
  {
    const token = await page.evaluate(() => sessionStorage.getItem('smartlinks.token'));
    const fresh = await open();
    await fresh.page.addInitScript((t) => sessionStorage.setItem('smartlinks.token', t), token);
    const t0 = Date.now();
    await fresh.page.goto(`${API}/app/#/overview`);
    await fresh.page.getByTestId('views').locator('.card-value').waitFor();
    const firstLoadMs = Date.now() - t0;
    await fresh.page.waitForLoadState('networkidle');
    const js = await fresh.page.evaluate(() =>
      performance.getEntriesByType('resource').filter((e) => e.name.endsWith('.js')).reduce((s, e) => s + e.transferSize, 0));
    console.log(`  measure first load of the overview (empty cache): ${firstLoadMs} ms from navigation to numbers on screen; ` +
      `JavaScript transferred ${(js / 1024).toFixed(1)} KB (budgets: 1 s, 300 KB gzipped)`);
    await fresh.context.close();
  }

  // ---- Keyboard only: skip link, then the navigation ----
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement?.textContent === 'Skip to content'), 'the first Tab reaches "Skip to content"');
  let reached = false;
  for (let i = 0; i < 8 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Realtime');
  }
  check(reached, 'Tab reaches the navigation\'s links');

  // ---- Realtime (opened by Enter on its link) ----
  const realtimes = answers(page, (u) => u.includes('/v1/analytics/realtime'));
  await page.keyboard.press('Enter');
  await page.getByTestId('active').waitFor();
  await page.waitForLoadState('networkidle');
  // The page refreshes every 5 s: the card shows the newest answer.
  const rtApi = await realtimes[realtimes.length - 1].json();
  check(digits(await page.getByTestId('views30').locator('.card-value').textContent()) === rtApi.views_last_30_min,
    `realtime views = API (${rtApi.views_last_30_min})`);
  await settle(page, '02-realtime');

  // ---- Links, a link's analytics ----
  await page.getByRole('link', { name: 'Links' }).click();
  await page.locator('table.links tbody tr[data-slug]').first().waitFor();
  const rows = await page.locator('table.links tbody tr[data-slug]').count();
  check(rows >= 3, `the links page lists the demo's links (${rows})`);
  await page.getByLabel('Search').fill('jiro-in-your-light');
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForResponse((r) => r.url().includes('/v1/smartlinks?') && r.url().includes('q=jiro'));
  await page.locator('tr[data-slug="jiro-in-your-light"]').waitFor();
  await settle(page, '03-links');
  overviews.length = 0;
  await page.locator('tr[data-slug="jiro-in-your-light"]').getByRole('link', { name: 'Analytics' }).click();
  await page.getByTestId('views').waitFor();
  await page.waitForLoadState('networkidle');
  const linkApi = await sameQuery(page, current(overviews.filter((r) => r.url().includes('smartlink_id='))));
  check((await card('views')) === linkApi.views && linkApi.views > 0, `a link's views = API (${linkApi.views})`);
  await settle(page, '04-link-analytics');

  // ---- Create a link, see it served by the edge ----
  const slug = `e2e-${Date.now().toString(36)}`;
  await page.goto(`${API}/app/#/links/new`);
  await page.getByLabel('Slug').fill(slug);
  await page.getByLabel('Title').fill('Dashboard Song');
  await page.getByLabel('Artist').fill('The Testers');
  await page.getByLabel('Spotify').fill('https://open.spotify.com/track/e2e');
  await page.getByLabel('Deezer').fill('https://www.deezer.com/track/e2e');
  check((await page.locator('.preview .pv-title').textContent()) === 'Dashboard Song', 'the preview shows the title as typed');
  check((await page.locator('.preview .pv-button').count()) === 2, 'the preview shows one button per destination');
  await settle(page, '05-link-new');
  await page.getByRole('button', { name: 'Create link' }).click();
  await page.getByTestId('saved').waitFor();
  await page.locator('.qr img').waitFor();
  await settle(page, '06-link-saved');
  let served = 0;
  for (let i = 0; i < 40 && served !== 200; i++) {
    const r = await getWithHost(`${EDGE}/${slug}`, 'demo.smartlinks.local');
    served = r.status;
    if (served === 200) check(r.body.includes('Dashboard Song'), 'the edge serves the new link\'s page');
    else await new Promise((res) => setTimeout(res, 250));
  }
  check(served === 200, `the link created in the dashboard is served by the edge (${slug})`, `status ${served}`);

  // ---- Campaigns, tracking health ----
  await page.getByRole('link', { name: 'Campaigns' }).click();
  const perf = await page.waitForResponse((r) => r.url().includes('/performance'));
  const perfApi = await perf.json();
  await page.getByTestId('campaign-clicks').waitFor();
  check(digits(await page.getByTestId('campaign-clicks').locator('.card-value').textContent()) === perfApi.total.pipeline.stream_clicks,
    `campaign click-outs = API (${perfApi.total.pipeline.stream_clicks})`);
  await settle(page, '07-campaigns');
  await page.getByRole('link', { name: 'Tracking health' }).click();
  const health = await page.waitForResponse((r) => r.url().includes('/v1/analytics/health'));
  const healthApi = await health.json();
  await page.getByTestId('health-status').waitFor();
  check((await page.getByTestId('health-status').textContent()) === healthApi.status, `health status = API (${healthApi.status})`);
  await settle(page, '08-health');

  // ---- CSV export ----
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.getByTestId('views').waitFor();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export').click()]);
  const csv = readFileSync(await download.path(), 'utf8');
  check(csv.startsWith('start,views,clicks'), 'an admin exports the analytics as CSV');

  // ---- Phone width ----
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.getByTestId('views').locator('.card-value').waitFor();
  await settle(page, '09-overview-phone');
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `no horizontal scrolling on a phone (${wide} px)`);
  await page.getByRole('button', { name: 'Menu' }).click();
  await page.getByRole('link', { name: 'Links' }).click();
  await page.locator('table.links').waitFor();
  await settle(page, '10-links-phone');
  await context.close();

  // ---- Viewer: role limits ----
  console.log('dashboard: viewer');
  {
    const { context, page } = await open();
    await signIn(page, logins.viewer);
    await page.getByTestId('views').waitFor();
    check((await page.getByTestId('export').count()) === 0, 'a viewer has no CSV export');
    await page.getByRole('link', { name: 'Links' }).click();
    await page.locator('table.links tbody tr[data-slug]').first().waitFor();
    check((await page.getByTestId('new-link').count()) === 0, 'a viewer has no "New link"');
    check((await page.getByRole('link', { name: 'Edit' }).count()) === 0, 'a viewer has no "Edit"');
    check((await page.getByRole('button', { name: /^Archive/ }).count()) === 0, 'a viewer has no "Archive"');
    await settle(page, '11-viewer-links');
    await page.goto(`${API}/app/#/links/new`);
    await page.getByText('Your role does not allow this page.').waitFor();
    ok('a viewer typing the create URL is told it is not allowed');
    // And the API refuses what the interface hides.
    const token = await page.evaluate(() => sessionStorage.getItem('smartlinks.token'));
    const r = await fetch(`${API}/v1/smartlinks`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ slug: 'viewer-try', track: { title: 't', artist_name: 'a' }, platforms: { spotify: 'https://open.spotify.com/x' } }) });
    check(r.status === 403, 'the API refuses a viewer\'s create (403)', `status ${r.status}`);
    await context.close();
  }

  // ---- A manager with a second factor (TOTP) ----
  console.log('dashboard: manager with TOTP');
  {
    const { context, page } = await open();
    await page.goto(`${API}/app/`);
    await page.getByLabel('Email').fill(logins.manager.email);
    await page.getByLabel('Password').fill(logins.manager.password);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByLabel('Authenticator code').waitFor();
    ok('a TOTP account is asked its code after the password');
    page.problems.length = 0; // the browser logs the 401 totp_required answer
    await settle(page, '14-login-totp');
    // A code is accepted once per 30 s step (issue #14): if this step's was
    // used (the seed's enrolment just now), the next step's is.
    for (let attempt = 0; attempt < 2; attempt++) {
      await page.getByLabel('Authenticator code').fill(totp(logins.manager.totp_secret));
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      const refused = await Promise.race([
        page.getByRole('navigation', { name: 'Main' }).waitFor().then(() => false),
        page.getByText('wrong TOTP code').waitFor().then(() => true),
      ]);
      if (!refused) break;
      await page.waitForTimeout(30_000 - (Date.now() % 30_000) + 500);
    }
    await page.getByTestId('whoami').waitFor();
    check((await page.getByTestId('whoami').textContent()).includes('manager'), 'the manager is signed in with password + TOTP');
    page.problems.length = 0; // a refused code's 401, if any, is logged by the browser
    await context.close();
  }

  // ---- Operator: agency view ----
  console.log('dashboard: operator');
  {
    const { context, page } = await open();
    await page.goto(`${API}/app/`);
    await page.getByRole('button', { name: 'Sign in with the operator key' }).click();
    await page.getByLabel('Operator key').fill(operatorKey);
    const agency = page.waitForResponse((r) => r.url().includes('/v1/analytics/agency'));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByRole('navigation', { name: 'Main' }).waitFor();
    await page.goto(`${API}/app/#/agency`);
    const agencyApi = await (await agency.catch(() => page.waitForResponse((r) => r.url().includes('/v1/analytics/agency')))).json();
    await page.getByTestId('agency-views').waitFor();
    check(digits(await page.getByTestId('agency-views').locator('.card-value').textContent()) === agencyApi.views,
      `agency views across tenants = API (${agencyApi.views}, ${agencyApi.tenant_count} tenants)`);
    await settle(page, '12-agency');
    await page.getByTestId('tenant-picker').selectOption({ label: 'Demo Records' }).catch(async () => {
      await page.getByTestId('tenant-picker').selectOption({ index: 1 });
    });
    await page.goto(`${API}/app/#/overview`);
    await page.getByTestId('views').locator('.card-value').waitFor();
    await settle(page, '13-operator-tenant-overview');
    await context.close();
  }
} catch (e) {
  failures++;
  console.log(`  FAIL  ${e.stack ?? e}`);
} finally {
  await browser.close();
}
console.log(`dashboard: screenshots in ${ARTIFACTS}`);
if (failures) {
  console.log(`dashboard: ${failures} check(s) failed`);
  process.exit(1);
}
console.log('dashboard: all checks passed');
