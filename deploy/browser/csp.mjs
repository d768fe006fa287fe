// The landing page under its own Content-Security-Policy, in Chromium
// (run by deploy/local/browser.sh, which says what is checked and why).
// Env: BROWSER_DEPS (where playwright-core is installed), PAGE_URL (the
// check's link on the edge), PAGE_HOST (its host, resolved to 127.0.0.1).
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import http from 'node:http';

const require = createRequire(process.env.BROWSER_DEPS + '/');
const { chromium } = require('playwright-core');
const url = process.env.PAGE_URL;
const host = process.env.PAGE_HOST;

// The hosts the page's pixels load from (edge/src/page.rs, PIXEL_SCRIPT_HOSTS).
const PIXELS = /^https:\/\/(www\.googletagmanager\.com|connect\.facebook\.net|analytics\.tiktok\.com)\//;

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  // As the machine notes say: no background networking on a closed network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--host-resolver-rules=MAP ${host} 127.0.0.1, MAP framer.test 127.0.0.1`],
});

/** A browser context whose pages record CSP violations, console errors and requests. */
async function visitor(headers = {}) {
  const context = await browser.newContext({ extraHTTPHeaders: headers });
  const seen = { violations: [], errors: [], pixelRequests: [] };
  // Init scripts come through the DevTools protocol: the page's CSP does not apply to them.
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) =>
      window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  // No network here: each pixel script is a stub that says it ran.
  await context.route(PIXELS, (route) => {
    seen.pixelRequests.push(route.request().url());
    route.fulfill({ status: 200, contentType: 'text/javascript', body: 'window.__pixels=(window.__pixels||0)+1;' });
  });
  // Destinations of the buttons (the 302's target) are not followed.
  await context.route(/^https:\/\/(open\.spotify\.com|www\.deezer\.com)\//, (route) =>
    route.fulfill({ status: 200, contentType: 'text/plain', body: 'destination' }));
  context.on('console', (m) => { if (m.type() === 'error') seen.errors.push(m.text()); });
  return { context, seen };
}

/** Loads the link; returns the page and its CSP header. */
async function open(context) {
  const page = await context.newPage();
  const res = await page.goto(url, { waitUntil: 'load' });
  assert.equal(res.status(), 200, `GET ${url}`);
  const csp = res.headers()['content-security-policy'];
  assert.ok(csp && csp.includes("'nonce-"), `a nonce policy: ${csp}`);
  await page.waitForTimeout(300); // scripts the page added get their turn
  return { page, csp };
}

async function noViolation(page, seen, what) {
  const inPage = await page.evaluate(() => window.__violations);
  const csp = seen.errors.filter((e) => /Content Security Policy/i.test(e));
  assert.deepEqual([inPage, csp], [[], []], `${what}: no CSP violation`);
  assert.equal(await page.evaluate(() => window.__xss), undefined, `${what}: the link's markup ran`);
}

const results = [];
async function check(name, body) {
  await body();
  results.push(name);
  console.log(`ok   ${name}`);
}

try {
  await check('a new visitor: banner shown, our script runs, no pixel before consent', async () => {
    const { context, seen } = await visitor();
    const { page, csp } = await open(context);
    assert.ok(csp.includes("'strict-dynamic'"), `pixels possible once consent is given: ${csp}`);
    assert.ok(csp.includes("frame-ancestors 'none'"), csp);
    assert.equal(await page.isVisible('#consent'), true, 'the consent banner (shown by our script)');
    assert.deepEqual(await page.evaluate(() => window.dataLayer), [], 'our script ran: dataLayer exists, nothing pushed');
    assert.deepEqual(seen.pixelRequests, [], 'no pixel before consent');
    const title = await page.textContent('h1');
    assert.ok(title.includes('<img src=x') && title.includes('</script>'), `markup shown as text: ${title}`);
    await noViolation(page, seen, 'new visitor');

    // Accept: every pixel loads and gets the view with the server's event id.
    await page.click('#consent button[data-consent="granted"]');
    await page.waitForFunction(() => window.__pixels >= 4, null, { timeout: 5000 });
    assert.equal(await page.isVisible('#consent'), false);
    const eventId = JSON.parse(await page.textContent('#sl-data')).eventId;
    const layer = await page.evaluate(() => window.dataLayer.filter((e) => e.event === 'smartlink_view'));
    assert.equal(layer.length, 1);
    assert.equal(layer[0].event_id, eventId, 'the view carries the id the server recorded');
    const hosts = new Set(seen.pixelRequests.map((u) => new URL(u).host));
    assert.deepEqual([...hosts].sort(), ['analytics.tiktok.com', 'connect.facebook.net', 'www.googletagmanager.com']);
    // A click: the pixels get it with the button's event id.
    const clicks = await page.evaluate(() => {
      const a = document.querySelector('a[data-platform]');
      a.addEventListener('click', (e) => e.preventDefault());
      a.click();
      return [a.getAttribute('data-eid'), window.dataLayer.filter((e) => e.event === 'smartlink_click')];
    });
    assert.equal(clicks[1].length, 1);
    assert.equal(clicks[1][0].event_id, clicks[0], 'the click carries the id of its redirect');
    // The page hidden: with consent it reports its engagement to its own
    // URL (issue #19), once, under its CSP (connect-src 'self'), and the
    // edge accepts it (204).
    const beacon = page.waitForResponse((r) => r.request().method() === 'POST', { timeout: 5000 });
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
      document.dispatchEvent(new Event('visibilitychange'));
    });
    const answer = await beacon;
    assert.equal(answer.status(), 204, 'the edge recorded the engagement');
    const report = JSON.parse(answer.request().postData());
    assert.equal(report.c, true, 'a button was clicked');
    assert.equal(report.lc, true, 'consent was given on this page: the view may now go to the ad platforms');
    assert.ok(report.ms >= 0 && typeof report.t === 'string', JSON.stringify(report));
    await noViolation(page, seen, 'after consent');

    // Next visit: consent remembered, pixels at once, no banner.
    const again = await open(context);
    await again.page.waitForFunction(() => window.__pixels >= 4, null, { timeout: 5000 });
    assert.equal(await again.page.isVisible('#consent'), false);
    await noViolation(again.page, seen, 'returning visitor');
    await context.close();
  });

  await check('a visitor who refuses: no script but ours, no pixel', async () => {
    const { context, seen } = await visitor();
    const { page } = await open(context);
    await page.click('#consent button[data-consent="denied"]');
    const again = await open(context);
    assert.ok(!again.csp.includes("'strict-dynamic'") && again.csp.includes("connect-src 'none'"), again.csp);
    assert.equal(await again.page.isVisible('#consent'), false);
    assert.deepEqual(await again.page.evaluate(() => window.dataLayer), [], 'our script still runs');
    assert.deepEqual(seen.pixelRequests, []);
    await noViolation(page, seen, 'refused');
    await noViolation(again.page, seen, 'refused, next visit');
    await context.close();
  });

  await check('DNT: 1: no banner, no pixel, our script runs', async () => {
    const { context, seen } = await visitor({ DNT: '1' });
    const { page, csp } = await open(context);
    assert.ok(!csp.includes("'strict-dynamic'"), csp);
    assert.equal(await page.isVisible('#consent'), false);
    assert.deepEqual(await page.evaluate(() => window.dataLayer), []);
    assert.deepEqual(seen.pixelRequests, []);
    await noViolation(page, seen, 'DNT');
    await context.close();
  });

  await check('another site cannot frame the page (frame-ancestors)', async () => {
    // A site on this machine (so that Chromium's local-network rules allow
    // the frames), framing a page of its own, as a control, and the link.
    const server = http.createServer((req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(req.url === '/control' ? '<!doctype html><p id="ok">framed</p>'
        : `<!doctype html><iframe id="control" src="/control"></iframe><iframe id="link" src="${url}"></iframe>`);
    });
    await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
    const { context } = await visitor();
    const page = await context.newPage();
    const issues = [];
    const cdp = await context.newCDPSession(page);
    cdp.on('Audits.issueAdded', (e) => issues.push(e.issue));
    await cdp.send('Audits.enable');
    await page.goto(`http://framer.test:${server.address().port}/`, { waitUntil: 'load' });
    await page.waitForTimeout(500);
    const inside = async (id, sel) => {
      const f = await (await page.$(`#${id}`)).contentFrame();
      return f ? f.evaluate((s) => !!document.querySelector(s), sel).catch(() => false) : false;
    };
    assert.equal(await inside('control', '#ok'), true, 'the control page renders in a frame');
    assert.equal(await inside('link', '#sl-data'), false, 'the landing page does not');
    const csp = issues.filter((i) => i.code === 'ContentSecurityPolicyIssue')
      .map((i) => i.details.contentSecurityPolicyIssueDetails.violatedDirective);
    assert.deepEqual(csp, ['frame-ancestors'], `Chromium's reason: ${JSON.stringify(issues)}`);
    await context.close();
    server.close();
  });
} finally {
  await browser.close();
}
console.log(`browser: ${results.length} checks passed`);
