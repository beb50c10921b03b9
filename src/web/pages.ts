import MarkdownIt from 'markdown-it';
import type { SessionView } from '../sessions/types.js';

/**
 * Lab descriptions are Markdown written by lab authors; raw HTML in them is
 * shown as text (`html: false`) and links are limited to safe schemes by
 * markdown-it's own link validation, so a description cannot run script.
 */
const markdown = new MarkdownIt({ html: false, linkify: true });

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function layout(title: string, body: string, script?: string, bodyClass = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="/web/assets/xterm.css">
<link rel="stylesheet" href="/web/assets/page.css">
${script ? `<script type="module" src="/web/assets/${script}"></script>` : ''}
</head>
<body class="${bodyClass}">
${body}
</body>
</html>
`;
}

/** The student's page: the lab on the left, one terminal tab per node on the right. */
export function sessionPage(session: SessionView): string {
  const nodes = session.connection?.nodes ?? ['control-plane'];
  return layout(
    `${session.labTitle} · labvirt`,
    `<header>
<h1>${escapeHtml(session.labTitle)}</h1>
<span>Session <code>${escapeHtml(session.id)}</code></span>
<span id="time-left" data-expires="${escapeHtml(session.expiresAt ?? '')}">…</span>
<span id="hints">Hints used: ${session.hintsUsed}/${session.hintsTotal}</span>
</header>
<main data-session="${escapeHtml(session.id)}" data-nodes="${escapeHtml(nodes.join(','))}">
<section id="lab">
${restartNotice(session)}<div class="description">${markdown.render(session.labDescription ?? '')}</div>
<div class="buttons">
<button id="check" type="button">Check</button>
<button id="hint" type="button">Hint</button>
<button id="extend" type="button">Extend</button>
<button id="stop" type="button">Stop</button>
</div>
<div id="output" role="status" aria-live="polite"></div>
</section>
<section id="terminals">
<nav id="tabs" role="tablist"></nav>
<div id="notices" role="status" aria-live="polite"></div>
<div id="panes"></div>
</section>
</main>`,
    'terminal.js',
  );
}

/** What a signed-in student sees once the session is over. */
/** Nodes whose VM came back fresh during the session: their disk was reset. */
function restartNotice(session: SessionView): string {
  const restarts = session.nodeRestarts ?? [];
  if (restarts.length === 0) return '';
  const lines = restarts.map(
    (r) =>
      `<p>${escapeHtml(r.node)} restarted at ${escapeHtml(r.at)}: its disk was reset, your changes on it are gone.</p>`,
  );
  return `<div id="restarts" class="restarts" role="alert">${lines.join('')}<p>The session goes on. To get the lab as it was set up, stop it and start it again.</p></div>
`;
}

export function endedPage(session: SessionView): string {
  const when = session.endedAt ? ` at ${session.endedAt}` : '';
  const why = session.endedReason ? ` (${session.endedReason})` : '';
  return layout(
    `${session.labTitle} · labvirt`,
    `<div class="ended" id="ended"><h1>${escapeHtml(session.labTitle)}</h1>
<p>This lab session has ended${escapeHtml(when + why)}.${session.endedDetail ? ` ${escapeHtml(session.endedDetail)}` : ''}</p>
<p>Start a new one from Slack or with <code>labvirt start</code>.</p></div>`,
  );
}

export function messagePage(title: string, text: string): string {
  return layout(
    title,
    `<div class="ended" id="message"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p></div>`,
  );
}

/** The operator's sign-in form (username and password when configured, or the API token), posted by admin.js. */
export function adminLoginPage(withOperators: boolean): string {
  const password = withOperators
    ? `<form id="password-login"><label>Username <input id="username" name="username" autocomplete="username" required></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button></form><p>or with the API token:</p>`
    : '';
  return layout(
    'labvirt · operators',
    `<div class="ended"><h1>labvirt operators</h1>
${password}<form id="login"><label>API token <input id="token" name="token" type="password" autocomplete="off" required></label>
<button type="submit">Sign in</button></form><p id="login-error" role="alert"></p></div>`,
    'admin.js',
    'admin',
  );
}

/** The dashboard; `actions`: the pool actions (resize, drain, delete a failed env) are offered. */
export function adminPage(operator: string, actions: boolean): string {
  return layout(
    'labvirt · pool',
    `<header><h1>labvirt pool</h1><span>signed in as ${escapeHtml(operator)}</span>
<span id="updated"></span><button id="logout" type="button">Sign out</button></header>
<main id="dashboard" data-actions="${actions ? 'pool' : 'sessions'}">
<p id="action-status" role="status" aria-live="polite"></p>
<h2>Flavors</h2>
<table id="flavors"><thead><tr><th>Flavor</th><th>Warm</th><th>Provisioning</th><th>In use</th><th>Failed</th><th>Target</th><th>Max</th><th>Waiting</th><th>Capacity</th><th>Last hour (warm / in use)</th><th></th></tr></thead><tbody></tbody></table>
<h2>Waiting line</h2>
<table id="waiting"><thead><tr><th>Position</th><th>Session</th><th>Student</th><th>Lab</th><th>Estimate</th></tr></thead><tbody></tbody></table>
<h2>Environments</h2>
<table id="envs"><thead><tr><th>Env</th><th>Flavor</th><th>State</th><th>Age</th><th>Student</th><th>Lab</th><th>Session</th><th></th></tr></thead><tbody></tbody></table>
<h2>Live events</h2>
<ol id="feed" reversed></ol>
</main>`,
    'admin.js',
    'admin',
  );
}
