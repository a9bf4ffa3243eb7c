// The web console in headless Chromium, driven by Playwright (playwright-core: no browser download; the
// system's Chromium is launched) with axe-core injected into every page. Run by `tests/browser.rs`, which
// starts nudge with seeded data and passes what the script needs as JSON in NUDGE_BROWSER_INPUT:
//
//   { base, short_base, short_token, admin, marketer, viewer, approve_id, guarded_id, trace,
//     chromium, artifacts, modules }
//
// The script prints one JSON line on stdout: { checks: [{ name, ok, detail }], axe: [{ page, violations }] }.
// The Rust test decides; the script only exits non-zero when it could not run at all.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const input = JSON.parse(process.env.NUDGE_BROWSER_INPUT);
const require = createRequire(join(input.modules, 'node_modules', 'noop.js'));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
mkdirSync(input.artifacts, { recursive: true });

const checks = [];
const axe = [];
const check = (name, ok, detail = '') => checks.push({ name, ok: Boolean(ok), detail: String(detail) });

// A context of its own per person: its own cookies. CSP is bypassed so that axe can be injected; this also
// means an unescaped <script> from the data would run, so the XSS checks test escaping, not the CSP.
async function person(browser) {
  const context = await browser.newContext({
    bypassCSP: true,
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
  });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.dialogs = [];
  page.on('dialog', async (d) => {
    page.dialogs.push(d.message());
    await d.dismiss();
  });
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(input.artifacts, `${name}.png`), fullPage: true });
}

// Opens `path` and answers the response (a navigation's final one, after redirects).
async function open(page, base, path) {
  return page.goto(base + path, { waitUntil: 'load' });
}

// Clicks `selector` and answers the response of the navigation it causes.
async function submit(page, selector) {
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
  return resp;
}

async function signIn(page, base, token) {
  await open(page, base, '/ui/login');
  await page.fill('#token', token);
  return submit(page, 'button[type=submit]');
}

// axe-core in the page; violations of impact serious or critical are reported.
async function audit(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ')),
    }));
  });
  const serious = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  axe.push({ page: name, violations: serious, minor: result.length - serious.length });
}

// Script elements other than the console's own (/ui/static/console.js): none may come from the data.
async function scripts(page) {
  return page.evaluate(() => document.querySelectorAll('script:not([src="/ui/static/console.js"])').length);
}

async function text(page) {
  return page.evaluate(() => document.body.innerText);
}

const admin = input.admin;
const browser = await chromium.launch({ executablePath: input.chromium, headless: true });
const current = new Set();
try {
  // Sign-in with a wrong token: 401, the form again with its error, no cookie.
  {
    const { context, page } = await person(browser);
    current.add(page);
    const resp = await signIn(page, input.base, 'nudge_0000');
    check('bad token: 401', resp.status() === 401, resp.status());
    const error = await page.textContent('#login-error').catch(() => null);
    check('bad token: error shown', error && error.includes('unknown or revoked'), error);
    check('bad token: no cookie', (await context.cookies()).length === 0, JSON.stringify(await context.cookies()));
    await audit(page, 'login');
    await shot(page, 'login');
    current.delete(page);
    await context.close();
  }

  // Sign-in with a good token, then every page with the seeded data, each checked by axe.
  const { context, page } = await person(browser);
  current.add(page);
  const resp = await signIn(page, input.base, admin);
  check('good token: overview', resp.status() === 200 && page.url() === `${input.base}/ui/`, page.url());
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'nudge_session');
  check(
    'good token: session cookie',
    session && session.httpOnly && session.secure && session.sameSite === 'Strict' && session.path === '/ui',
    JSON.stringify(cookies),
  );
  check(
    'good token: cookie hidden from scripts',
    !(await page.evaluate(() => document.cookie)).includes('nudge_session'),
  );

  const pages = [
    ['overview', '/ui/', 'Overview', ['Deliveries received', 'Approvals waiting', 'ada (admin)']],
    ['audit-trace', `/ui/audit?trace=${input.trace}`, 'Audit explorer', [input.trace, 'received', 'decided']],
    ['audit-customer', '/ui/audit?customer=shopify:701', 'Audit explorer', ['Customer shopify:701', input.trace]],
    ['approvals', '/ui/approvals', 'Approvals', ['Flow first_orders', 'Approve all 3 pending']],
    ['flows', '/ui/flows', 'Flows', ['first_orders', 'vip_watch', 'approval', 'shadow']],
    ['flow', '/ui/flows/vip_watch', 'Flow vip_watch', ['Configuration', 'VIP <script>alert(2)</script> watch']],
    ['models', '/ui/models', 'Models', ['bgnbd-ui-1', 'Activate']],
    ['model', '/ui/models/bgnbd-ui-1', 'Model version bgnbd-ui-1', ['What the registry recorded']],
    ['segments', '/ui/segments', 'Segments', ['Adopted segments']],
    ['dead-letters', '/ui/dead-letters', 'Dead letters and quarantine', ['Replay dead letters']],
    [
      'customer',
      '/ui/customers?id=shopify:701',
      'Customer shopify:701',
      ['Scores now', '<script>alert(1)</script>', 'c701@example.org', '7101'],
    ],
    ['reflected', '/ui/approvals?flow=%3Cscript%3Ealert(3)%3C/script%3E', 'Approvals', ['<script>alert(3)</script>']],
    ['not-found', '/ui/flows/nope', null, ['nope']],
  ];
  for (const [name, path, heading, needles] of pages) {
    const r = await open(page, input.base, path);
    await shot(page, name);
    const expected = name === 'not-found' ? 404 : 200;
    check(`${name}: status`, r.status() === expected, `${r.status()} at ${page.url()}`);
    const h1 = await page.textContent('h1').catch(() => null);
    if (heading !== null) {
      check(`${name}: heading`, h1 && h1.trim().startsWith(heading), h1);
    }
    const body = await text(page);
    for (const n of needles) {
      check(`${name}: shows ${n}`, body.includes(n), body.slice(0, 2000));
    }
    check(`${name}: no script element`, (await scripts(page)) === 0, await page.content());
    await audit(page, name);
  }
  check('no script from the data ran', page.dialogs.length === 0, JSON.stringify(page.dialogs));

  // The console's script: the overview offers to refresh itself, and ticking the box reloads its content in
  // place (the page's own element stays; the counts are fetched again).
  {
    await open(page, input.base, '/ui/');
    check('live: the box is offered', (await page.locator('#live-refresh').count()) === 1);
    await page.evaluate(() => {
      document.querySelector('#main h1').dataset.marker = 'old';
    });
    await page.check('#live-refresh');
    const swapped = await page
      .waitForFunction(() => document.querySelector('#main h1') && !document.querySelector('#main h1').dataset.marker, null, {
        timeout: 8_000,
      })
      .then(() => true)
      .catch(() => false);
    check('live: the overview reloaded in place', swapped && page.url() === `${input.base}/ui/`, page.url());
    check('live: still the overview', (await text(page)).includes('Deliveries received'));
    await page.uncheck('#live-refresh');
  }

  // A form without its CSRF token: 403, and the item stays pending.
  {
    await open(page, input.base, '/ui/approvals?flow=first_orders');
    const form = `form[action="/ui/approvals/${input.guarded_id}/reject"]`;
    const removed = await page.evaluate((f) => {
      const i = document.querySelector(`${f} input[name=csrf]`);
      i?.remove();
      return i !== null;
    }, form);
    check('csrf: field removed', removed);
    const r = await submit(page, `${form} button`);
    check('csrf: 403', r.status() === 403, r.status());
    await shot(page, 'csrf-refused');
  }
  current.delete(page);
  await context.close();

  // Approving from the console as a marketer: one click, the flash, no button for the item any more.
  {
    const { context, page } = await person(browser);
    current.add(page);
    await signIn(page, input.base, input.marketer);
    await open(page, input.base, '/ui/approvals?flow=first_orders');
    const button = `button[aria-label="Approve item ${input.approve_id}"]`;
    const r = await submit(page, button);
    check('approve: page after', r.status() === 200 && page.url().endsWith('/ui/approvals?flow=first_orders'), page.url());
    const flash = await page.textContent('.flash').catch(() => null);
    check('approve: flash', flash && flash.includes(`Item ${input.approve_id} approved.`), flash);
    check('approve: button gone', (await page.locator(button).count()) === 0);
    check('approve: marketer sees no email', !(await text(page)).includes('@example.org'));
    await shot(page, 'approved');
    current.delete(page);
    await context.close();
  }

  // A viewer: no approve/reject/replay buttons; the forms posted anyway (from the page, with the session's
  // CSRF token) are refused with 403.
  {
    const { context, page } = await person(browser);
    current.add(page);
    await signIn(page, input.base, input.viewer);
    await open(page, input.base, '/ui/approvals');
    await shot(page, 'viewer-approvals');
    check('viewer: item listed', (await text(page)).includes('Flow first_orders'));
    const buttons = await page.locator('main button').allTextContents();
    check('viewer: no decision buttons', !buttons.some((b) => /approve|reject/i.test(b)), JSON.stringify(buttons));
    await open(page, input.base, '/ui/dead-letters');
    check('viewer: no replay button', (await page.locator('form[action="/ui/dead-letters/replay"]').count()) === 0);
    check('viewer: no customers link', (await page.locator('nav a[href="/ui/customers"]').count()) === 0);
    const post = async (action, fields) => {
      await page.evaluate(
        ([action, fields]) => {
          const f = document.createElement('form');
          f.method = 'post';
          f.action = action;
          const csrf = document.querySelector('input[name=csrf]').value;
          for (const [k, v] of Object.entries({ csrf, ...fields })) {
            const i = document.createElement('input');
            i.type = 'hidden';
            i.name = k;
            i.value = v;
            f.append(i);
          }
          f.id = 'forged';
          document.body.append(f);
        },
        [action, fields],
      );
      const [r] = await Promise.all([
        page.waitForNavigation({ waitUntil: 'load' }),
        page.evaluate(() => document.getElementById('forged').submit()),
      ]);
      return r.status();
    };
    const approve = await post(`/ui/approvals/${input.guarded_id}/approve`, { flow: 'first_orders' });
    check('viewer: approve posted → 403', approve === 403, approve);
    await shot(page, 'viewer-refused');
    await open(page, input.base, '/ui/dead-letters');
    const replay = await post('/ui/dead-letters/replay', { what: 'dead_letters' });
    check('viewer: replay posted → 403', replay === 403, replay);
    current.delete(page);
    await context.close();
  }

  // An idle session expires (on an app whose sessions last one second): the next click goes to sign-in.
  {
    const { context, page } = await person(browser);
    current.add(page);
    const r = await signIn(page, input.short_base, input.short_token);
    check('expiry: signed in', r.status() === 200 && page.url() === `${input.short_base}/ui/`, page.url());
    await page.waitForTimeout(1800);
    await submit(page, 'nav a[href="/ui/flows"]');
    check('expiry: back to sign-in', page.url() === `${input.short_base}/ui/login`, page.url());
    check('expiry: the form', (await page.locator('#token').count()) === 1);
    current.delete(page);
    await context.close();
  }
} catch (e) {
  check('script ran to the end', false, e.stack || e);
  for (const page of current) {
    await shot(page, 'failed').catch(() => {});
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify({ checks, axe })}\n`);
