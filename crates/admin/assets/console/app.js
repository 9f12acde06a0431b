// Tributary console: one script, no build step, no dependency. Every page reads and changes
// through the admin API's own /v1/* endpoints (signed in by a session cookie), so validation,
// defaults and error messages are the API's; what the forms offer comes from
// /console/meta.json, which the server builds from the definitions in its crates.
//
// Data is only ever put into the page as text (textContent, attribute values): event payloads
// are whatever a sender posted.
'use strict';

(() => {
  const state = {
    meta: null,
    envs: [],
    env: localStorage.getItem('tributary.env') || 'development',
    signedIn: false,
    csrf: '',
    renderId: 0,
    cleanups: [],
    flashKeep: false,
    follow: false,
    revealed: null, // a secret just created: shown once, on the next render of its page
    lastPath: '',
    focusAfter: null, // a selector to focus once the next render is on screen
  };

  // ------------------------------------------------------------------ DOM helpers

  const $ = (sel, root = document) => root.querySelector(sel);
  const enc = encodeURIComponent;

  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }

  // h('tag', {attr: value, onclick: fn}, ...children). Properties `value` and `checked` are
  // set after the children (a <select> needs its options first).
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    const late = {};
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'for') el.htmlFor = v;
      else if (k === 'value' || k === 'checked') late[k] = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    append(el, kids);
    for (const [k, v] of Object.entries(late)) el[k] = v;
    return el;
  }

  const code = (t) => h('code', null, t);
  const json = (v) => h('pre', { class: 'json' }, JSON.stringify(v, null, 2));

  let uid = 0;
  const nextId = (p) => `${p}-${++uid}`;

  // A labelled form field. `input` is an element; `name` is the API's field name (the 422
  // answer's `details.field`), `hint` a line under it.
  function field(label, input, { name, hint, required, cls } = {}) {
    if (!input.id) input.id = nextId('f');
    if (name) input.dataset.field = name;
    const kids = [h('label', { for: input.id }, label, required ? h('span', { class: 'req' }, 'required') : null), input];
    if (hint) {
      const hid = `${input.id}-hint`;
      kids.push(h('p', { class: 'hint', id: hid }, hint));
      input.setAttribute('aria-describedby', hid);
    }
    return h('div', { class: `field ${cls || ''}` }, kids);
  }

  function checkbox(label, { name, checked, hint, id } = {}) {
    const input = h('input', { type: 'checkbox', id: id || nextId('c'), checked: !!checked });
    if (name) input.dataset.field = name;
    const hid = hint ? `${input.id}-hint` : null;
    if (hid) input.setAttribute('aria-describedby', hid);
    const box = h('div', { class: 'check' }, input, h('div', null, h('label', { for: input.id }, label), hint ? h('p', { class: 'hint', id: hid }, hint) : null));
    box.input = input;
    return box;
  }

  function select(options, value, attrs = {}) {
    const s = h('select', attrs, options.map(([v, label]) => h('option', { value: v }, label)));
    if (value !== undefined && value !== null) s.value = value;
    return s;
  }

  function table(columns, rows, { cards = true, rowAttrs } = {}) {
    const head = h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, c.label))));
    const body = h('tbody', null, rows.map((r) => tableRow(columns, r, rowAttrs)));
    const t = h('table', { class: cards ? 'cards' : '' }, head, body);
    t.columns = columns;
    t.rowAttrs = rowAttrs;
    return h('div', { class: 'table-wrap' }, t);
  }

  function tableRow(columns, r, rowAttrs) {
    return h('tr', rowAttrs ? rowAttrs(r) : null, columns.map((c) => h('td', { 'data-label': c.label, class: c.cls || null }, c.cell(r))));
  }

  function empty(title, text, ...extra) {
    return h('div', { class: 'empty' }, h('h2', null, title), h('p', null, text), extra.length ? h('div', { class: 'actions', 'data-center': '' }, extra) : null);
  }

  function badge(status) {
    const cls = { processed: 'ok', success: 'ok', failed: 'bad', rejected: 'bad', dead_lettered: 'bad', duplicate: 'muted', skipped: 'warn' }[status] || '';
    return h('span', { class: `badge ${cls}` }, status || '—');
  }

  // ------------------------------------------------------------------ time

  const dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const fmt = (ms) => (ms ? dateFmt.format(new Date(ms)) : '—');

  function ago(ms) {
    if (!ms) return 'never';
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) return `in ${duration(-s)}`;
    if (s < 10) return 'just now';
    return `${duration(s)} ago`;
  }

  function duration(s) {
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.round(s / 60)} min`;
    if (s < 86400) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} d`;
  }

  const when = (ms, relative) => (ms ? h('time', { datetime: new Date(ms).toISOString(), title: fmt(ms) }, relative ? ago(ms) : fmt(ms)) : '—');

  function toLocalInput(ms) {
    if (!ms) return '';
    const d = new Date(Number(ms));
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  }
  const fromLocalInput = (v) => (v ? String(new Date(v).getTime()) : '');

  // ------------------------------------------------------------------ the API

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || null;
    }
  }

  function csrf() {
    const c = document.cookie.split(';').map((s) => s.trim()).find((s) => s.startsWith('tributary_csrf='));
    return c ? c.slice('tributary_csrf='.length) : state.csrf;
  }

  async function api(method, path, body, { quiet401 } = {}) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method !== 'GET') headers['x-csrf-token'] = csrf();
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'network', `Could not reach the admin API (${e.message}). Is the admin role running?`);
    }
    if (resp.status === 204) return null;
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (!resp.ok) {
      const e = (data && data.error) || {};
      const err = new ApiError(resp.status, e.code || `http_${resp.status}`, e.message || resp.statusText || 'request failed', e.details);
      if (resp.status === 401 && !quiet401) signedOut('Your session has ended: sign in again.');
      throw err;
    }
    return data;
  }

  const envPath = (env) => `/v1/environments/${enc(env)}`;
  const srcEnvPath = (key, env) => `/v1/sources/${enc(key)}/environments/${enc(env)}`;

  // ------------------------------------------------------------------ messages and errors

  function flash(text, bad) {
    const box = $('#flash');
    box.replaceChildren(text ? h('p', { class: bad ? 'bad' : '' }, text) : '');
    state.flashKeep = true;
  }

  function describe(err) {
    if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
    const field = err.details && err.details.field ? ` (field ${err.details.field})` : '';
    return err.status ? `${err.message}${field} — ${err.status} ${err.code}` : err.message;
  }

  function errorBox(err) {
    return h('div', { class: 'error-box', role: 'alert' }, h('p', null, describe(err)));
  }

  function clearErrors(form) {
    form.querySelectorAll('.field-error').forEach((e) => e.remove());
    form.querySelectorAll('[aria-invalid]').forEach((i) => {
      i.removeAttribute('aria-invalid');
      if (i.dataset.describedby !== undefined) {
        if (i.dataset.describedby) i.setAttribute('aria-describedby', i.dataset.describedby);
        else i.removeAttribute('aria-describedby');
        delete i.dataset.describedby;
      }
    });
    const fe = form.querySelector('.form-error');
    if (fe) {
      fe.hidden = true;
      fe.textContent = '';
    }
  }

  // An API error shown where it belongs: at the input its `details.field` names, else at the
  // top of the form.
  function showError(form, err) {
    const name = err && err.details && err.details.field;
    const input = name ? form.querySelector(`[data-field="${CSS.escape(name)}"]`) : null;
    if (input) {
      // a field inside a closed <details> is shown first
      for (let d = input.closest('details'); d; d = d.parentElement && d.parentElement.closest('details')) d.open = true;
      const id = `${input.id}-error`;
      const msg = h('p', { class: 'field-error', id }, err.message);
      const wrap = input.closest('.field, .check') || input.parentElement;
      wrap.append(msg);
      input.dataset.describedby = input.getAttribute('aria-describedby') || '';
      input.setAttribute('aria-describedby', [input.dataset.describedby, id].filter(Boolean).join(' '));
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    let box = form.querySelector('.form-error');
    if (!box) {
      box = h('p', { class: 'form-error', role: 'alert', tabindex: '-1' });
      form.prepend(box);
    }
    box.textContent = describe(err);
    box.hidden = false;
    box.focus();
  }

  async function busy(button, label, fn) {
    const old = button ? button.textContent : '';
    if (button) {
      button.disabled = true;
      button.setAttribute('aria-busy', 'true');
      if (label) button.textContent = label;
    }
    try {
      return await fn();
    } finally {
      if (button && button.isConnected) {
        button.disabled = false;
        button.removeAttribute('aria-busy');
        button.textContent = old;
      }
    }
  }

  // Submit handler: clears old errors, runs `fn`, shows the API's error at its field.
  function onSubmit(form, label, fn) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const button = e.submitter || form.querySelector('button[type=submit]');
      try {
        await busy(button, label, fn);
      } catch (err) {
        // A 401 signed the console out: this form is gone with the page.
        if (!form.isConnected) return;
        showError(form, err);
      }
    });
    return form;
  }

  function formError() {
    return h('p', { class: 'form-error', role: 'alert', tabindex: '-1', hidden: true });
  }

  // A confirmation in a modal <dialog>: Escape or Cancel says no. Focus starts on Cancel.
  function confirmDialog({ title, text, confirm, danger }) {
    return new Promise((resolve) => {
      const tid = nextId('dlg');
      const dlg = h(
        'dialog',
        { 'aria-labelledby': tid },
        h(
          'form',
          { method: 'dialog' },
          h('h2', { id: tid }, title),
          h('p', null, text),
          h('div', { class: 'actions' }, h('button', { value: 'cancel', class: 'secondary' }, 'Cancel'), h('button', { value: 'confirm', class: danger ? 'danger' : '' }, confirm)),
        ),
      );
      dlg.addEventListener('close', () => {
        resolve(dlg.returnValue === 'confirm');
        dlg.remove();
      });
      document.body.append(dlg);
      dlg.showModal();
    });
  }

  async function copyText(text, input) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      if (input) {
        input.focus();
        input.select();
        try {
          return document.execCommand('copy');
        } catch (_) {
          return false;
        }
      }
      return false;
    }
  }

  function copyButton(getText, input, what) {
    const status = h('span', { class: 'hint', role: 'status' });
    const btn = h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        onclick: async () => {
          const ok = await copyText(getText(), input);
          status.textContent = ok ? `Copied ${what} to the clipboard.` : `Could not copy: select the ${what} and press Ctrl+C (⌘C).`;
        },
      },
      `Copy ${what}`,
    );
    return [btn, status];
  }

  // ------------------------------------------------------------------ routing

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/sources';
    const [path, qs] = raw.split('?');
    const parts = path.split('/').filter(Boolean).map((p) => {
      try {
        return decodeURIComponent(p);
      } catch (_) {
        return p;
      }
    });
    const query = Object.fromEntries(new URLSearchParams(qs || ''));
    return { parts, query, path };
  }

  function href(parts, query) {
    const q = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== '' && v !== undefined && v !== null)).toString() : '';
    return `#/${parts.map(enc).join('/')}${q ? `?${q}` : ''}`;
  }

  function go(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  function route(parts) {
    const [a, b, c, d, e] = parts;
    switch (a) {
      case undefined:
      case 'sources':
        if (!b) return ['sources', pageSources];
        if (!d) return ['sources', (p, x, q) => pageSetup(p, x, q, b, c || state.env)];
        if (d === 'mappings' && !e) return ['sources', (p, x, q) => pageMappings(p, x, q, b, c)];
        if (d === 'mappings') return ['sources', (p, x, q) => pageMappingForm(p, x, q, b, c, e === 'new' ? null : e)];
        if (d === 'rehearse') return ['sources', (p, x, q) => pageRehearse(p, x, q, b, c)];
        break;
      case 'events':
        return ['events', b ? (p, x, q) => pageEvent(p, x, q, b) : pageEvents];
      case 'actions':
        return ['actions', pageActions];
      case 'users':
        return ['users', (p, x, q) => pageUsers(p, x, q, b)];
      case 'audit':
        return ['audit', pageAudit];
      default:
    }
    return [null, pageNotFound];
  }

  async function render() {
    const id = ++state.renderId;
    state.cleanups.splice(0).forEach((f) => f());
    const flashed = state.flashKeep;
    if (state.flashKeep) state.flashKeep = false;
    else $('#flash').replaceChildren();
    if (!state.signedIn) return renderSignIn();
    const { parts, query, path } = parseHash();
    const [section, view] = route(parts);
    document.querySelectorAll('#nav a').forEach((a) => {
      if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    });
    const ctx = { alive: () => id === state.renderId, cleanup: (f) => state.cleanups.push(f) };
    const page = h('div', { class: 'page' });
    const main = $('#main');
    const moved = path !== state.lastPath;
    state.lastPath = path;
    try {
      await view(page, ctx, query);
    } catch (err) {
      if (!ctx.alive()) return;
      if (err instanceof ApiError && err.status === 401) return;
      page.replaceChildren(
        h('h1', { tabindex: '-1' }, err instanceof ApiError && err.status === 404 ? 'Not found' : 'Something went wrong'),
        errorBox(err),
        h('p', null, h('a', { href: '#/sources' }, 'Back to the sources')),
      );
    }
    if (!ctx.alive()) return;
    main.replaceChildren(page);
    const title = $('h1', page);
    document.title = `${title ? title.textContent : 'Console'} · Tributary`;
    const after = state.focusAfter && $(state.focusAfter, page);
    state.focusAfter = null;
    if (after) after.focus();
    else if (moved && title) title.focus();
    // after a change, its message (above the page) is in view
    if (flashed && !after) window.scrollTo(0, 0);
  }

  async function pageNotFound(page) {
    page.append(h('h1', { tabindex: '-1' }, 'Not found'), h('p', null, 'No page here. ', h('a', { href: '#/sources' }, 'Go to the sources.')));
  }

  // ------------------------------------------------------------------ session

  function setSignedIn(yes) {
    state.signedIn = yes;
    $('#nav').hidden = !yes;
    $('#session-tools').hidden = !yes;
  }

  function signedOut(message) {
    if (!state.signedIn) return;
    setSignedIn(false);
    state.renderId++;
    renderSignIn(message);
  }

  function renderSignIn(message) {
    setSignedIn(false);
    const input = h('input', { type: 'password', id: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
    const form = h(
      'form',
      { class: 'card signin', 'aria-labelledby': 'signin-title' },
      h('h1', { id: 'signin-title', tabindex: '-1' }, 'Sign in to Tributary'),
      message ? h('p', { class: 'notice', role: 'alert' }, message) : null,
      formError(),
      field('Admin token', input, { name: 'token', hint: 'The admin.token of the configuration (TRIBUTARY_ADMIN_TOKEN). You stay signed in for 8 hours on this browser.' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')),
    );
    onSubmit(form, 'Signing in…', async () => {
      const s = await api('POST', '/console/session', { token: input.value }, { quiet401: true });
      state.csrf = s.csrf_token;
      setSignedIn(true);
      await loadEnvs();
      state.lastPath = '';
      go(location.hash && location.hash !== '#/signin' ? location.hash : '#/sources');
    });
    document.title = 'Sign in · Tributary';
    $('#main').replaceChildren(form);
    input.focus();
  }

  async function signOut() {
    try {
      await api('DELETE', '/console/session', undefined, { quiet401: true });
    } catch (_) {
      // the cookies are cleared by the answer; an error leaves them to expire
    }
    setSignedIn(false);
    state.csrf = '';
    state.renderId++;
    $('#flash').replaceChildren();
    renderSignIn('You are signed out.');
  }

  async function loadEnvs() {
    const { environments } = await api('GET', '/v1/environments');
    state.envs = environments;
    if (!environments.includes(state.env) && environments.length) state.env = environments[0];
    const sel = $('#env-select');
    sel.replaceChildren(...environments.map((e) => h('option', { value: e }, e)));
    sel.value = state.env;
  }

  function setEnv(env) {
    state.env = env;
    localStorage.setItem('tributary.env', env);
    const sel = $('#env-select');
    if (sel.value !== env) sel.value = env;
  }

  // ------------------------------------------------------------------ sources

  async function pageSources(page, ctx) {
    const { sources } = await api('GET', '/v1/sources');
    page.append(
      h('h1', { tabindex: '-1' }, 'Sources'),
      h('p', { class: 'lead' }, 'Where events come in. Each source has its own ingest URL, settings and mappings in every environment.'),
    );
    if (!sources.length) {
      page.append(
        empty(
          'No sources yet',
          'Create one from a template below. Each environment gets an ingest URL to paste into Segment, RudderStack, Hightouch, Census or any HTTP sender; then add mappings to turn its events into actions.',
        ),
      );
    } else {
      page.append(sourcesTable(sources, ctx));
    }
    page.append(createSourceForm());
  }

  function sourcesTable(sources, ctx) {
    const envs = state.envs;
    const columns = [
      {
        label: 'Source',
        cell: (s) => [h('a', { href: href(['sources', s.key, state.env]), class: 'source-name' }, s.name), h('div', { class: 'small muted' }, code(s.key))],
      },
      { label: 'Template', cell: (s) => h('span', { class: 'badge muted' }, s.template) },
      ...envs.map((env) => ({
        label: env,
        cls: 'status-cell',
        cell: (s) => {
          if (!s.environments[env]) return h('span', { class: 'muted' }, '—');
          const out = h('span', { class: 'muted', 'data-status': `${s.key}/${env}` }, 'Loading…');
          api('GET', `${srcEnvPath(s.key, env)}/status`)
            .then((st) => {
              if (!ctx.alive()) return;
              out.className = '';
              out.replaceChildren(
                h('div', null, h('strong', null, String(st.events_count)), ' events (30 d)'),
                h('div', null, 'Last: ', st.last_event_received ? when(st.last_event_received, true) : 'none yet'),
                h('div', null, `${st.active_mappings_count}/${st.mappings_count} mappings active`),
              );
            })
            .catch((err) => {
              out.textContent = describe(err);
            });
          return [h('a', { href: href(['sources', s.key, env]), 'aria-label': `${s.name} in ${env}` }, 'Open'), out];
        },
      })),
      {
        label: 'Manage',
        cell: (s) =>
          h(
            'div',
            { class: 'actions' },
            h('button', { type: 'button', class: 'secondary', onclick: (e) => renameInline(e.target, s) }, 'Rename'),
            h('button', { type: 'button', class: 'danger secondary', onclick: (e) => deleteSource(e.target, s) }, 'Delete'),
          ),
      },
    ];
    return table(columns, sources, { rowAttrs: (s) => ({ 'data-source': s.key }) });
  }

  function renameInline(button, s) {
    const td = button.closest('tr').querySelector('td');
    const input = h('input', { type: 'text', value: s.name, required: true });
    const form = h(
      'form',
      null,
      formError(),
      field(`New name for ${s.key}`, input, { name: 'name' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save name'), h('button', { type: 'button', class: 'secondary', onclick: () => render() }, 'Cancel')),
    );
    onSubmit(form, 'Saving…', async () => {
      await api('PATCH', `/v1/sources/${enc(s.key)}`, { name: input.value });
      flash(`Renamed ${s.key} to “${input.value}”.`);
      render();
    });
    td.replaceChildren(form);
    input.focus();
    input.select();
  }

  async function deleteSource(button, s) {
    const yes = await confirmDialog({
      title: `Delete “${s.name}”?`,
      text: `The source ${s.key} is removed with its settings, ingest URLs and mappings in every environment: senders using its URLs are refused from then on. Events already logged stay until they expire.`,
      confirm: 'Delete source',
      danger: true,
    });
    if (!yes) return;
    try {
      await busy(button, 'Deleting…', () => api('DELETE', `/v1/sources/${enc(s.key)}`));
      flash(`Deleted the source ${s.key}.`);
      render();
    } catch (err) {
      flash(describe(err), true);
    }
  }

  function createSourceForm() {
    const key = h('input', { type: 'text', id: 'new-source-key', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'segment-web' });
    const name = h('input', { type: 'text', id: 'new-source-name', autocomplete: 'off', placeholder: 'Web app (Segment)' });
    const template = select(state.meta.templates.map((t) => [t, TEMPLATE_LABELS[t] || t]), 'segment', { id: 'new-source-template' });
    const form = h(
      'form',
      { class: 'card', 'aria-labelledby': 'create-source-title' },
      h('h2', { id: 'create-source-title' }, 'Create a source'),
      formError(),
      h(
        'div',
        { class: 'row' },
        field('Key', key, { name: 'key', required: true, hint: 'Its id: 1–64 letters, digits, - or _. It cannot change later.' }),
        field('Name', name, { name: 'name', hint: 'What people see; the key when empty.' }),
        field('Template', template, { name: 'template', hint: 'How requests are read and verified.' }),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create source')),
    );
    onSubmit(form, 'Creating…', async () => {
      const body = { key: key.value.trim(), template: template.value };
      if (name.value.trim()) body.name = name.value.trim();
      const s = await api('POST', '/v1/sources', body);
      const env = s.environments[state.env] ? state.env : Object.keys(s.environments)[0];
      flash(`Created ${s.key}. Copy its ${env} URL into the sender, then add mappings.`);
      go(href(['sources', s.key, env]));
    });
    return form;
  }

  const TEMPLATE_LABELS = { segment: 'Segment', rudderstack: 'RudderStack', hightouch: 'Hightouch', census: 'Census', http: 'Generic HTTP (webhooks)' };

  const PASTE = {
    segment: [
      'Segment',
      'Connections → Catalog → Destinations → Webhooks. Connect it to your source and paste this URL under “Webhook URLs”. If you set a “Shared Secret” there, add the same secret below and choose the Segment signature scheme.',
    ],
    rudderstack: ['RudderStack', 'Destinations → New destination → Webhook. Paste this URL as the Webhook URL (method POST), then connect your sources to it.'],
    hightouch: [
      'Hightouch',
      'Destinations → Add destination → HTTP Request (or Webhook). Paste this URL as the URL to send to, and in the sync send each row as a JSON POST; set the paths below so the user id and event type are found.',
    ],
    census: ['Census', 'Destinations → New destination → Webhook (or HTTP Request). Paste this URL as the webhook URL and create a sync that sends records as JSON POSTs.'],
    http: ['Any other sender', 'POST JSON to this URL. Choose a verification scheme below to require a signature, a shared-secret header or a bearer token.'],
  };

  // ------------------------------------------------------------------ a source's environment

  async function sourceHeader(page, key, env, tab) {
    const src = await api('GET', `/v1/sources/${enc(key)}`);
    if (!src.environments[env]) throw new ApiError(404, 'not_found', `source ${key} has no environment ${env}`);
    if (env !== state.env && state.envs.includes(env)) setEnv(env);
    const tabs = [
      ['setup', 'Setup', ['sources', key, env]],
      ['mappings', 'Mappings', ['sources', key, env, 'mappings']],
      ['rehearse', 'Rehearse', ['sources', key, env, 'rehearse']],
    ];
    const sub = tab === 'setup' ? [] : tab === 'rehearse' ? ['rehearse'] : ['mappings'];
    page.append(
      h('div', { class: 'crumbs' }, h('a', { href: '#/sources' }, 'Sources'), ' / ', src.name),
      h('h1', { tabindex: '-1' }, src.name, ' ', h('span', { class: 'badge muted' }, TEMPLATE_LABELS[src.template] || src.template)),
      h(
        'nav',
        { class: 'envs', 'aria-label': 'Environment' },
        h('span', { class: 'muted' }, 'Environment:'),
        Object.keys(src.environments).map((e) => h('a', { href: href(['sources', key, e, ...sub]), 'aria-current': e === env ? 'page' : null }, e)),
      ),
      h(
        'nav',
        { class: 'tabs', 'aria-label': 'Source pages' },
        tabs.map(([id, label, parts]) => h('a', { href: href(parts), 'aria-current': id === tab ? 'page' : null }, label)),
      ),
    );
    return src;
  }

  async function pageSetup(page, ctx, query, key, env) {
    const src = await sourceHeader(page, key, env, 'setup');
    const s = src.environments[env];
    const base = srcEnvPath(key, env);
    page.append(statusCard(key, env, ctx), ingestCard(src, s), settingsForm(base, s, src.template), h('div', { class: 'grid' }, secretsCard(base, key, env, s), rotateCard(base, s)));
  }

  function statusCard(key, env, ctx) {
    const dl = h('dl', { class: 'stats' }, h('div', null, h('dt', null, 'Status'), h('dd', { class: 'muted' }, 'Loading…')));
    const card = h(
      'section',
      { class: 'card', 'aria-labelledby': 'status-title' },
      h('div', { class: 'between' }, h('h2', { id: 'status-title' }, 'Status'), h('a', { href: href(['events'], { source: key }) }, `See its events in ${env}`)),
      dl,
    );
    api('GET', `${srcEnvPath(key, env)}/status`)
      .then((st) => {
        if (!ctx.alive()) return;
        dl.replaceChildren(
          h('div', null, h('dt', null, 'Events, last 30 days'), h('dd', { id: 'status-events' }, String(st.events_count))),
          h('div', null, h('dt', null, 'Last event'), h('dd', null, st.last_event_received ? when(st.last_event_received, true) : 'none yet')),
          h('div', null, h('dt', null, 'Mappings active'), h('dd', null, `${st.active_mappings_count} of ${st.mappings_count}`)),
        );
      })
      .catch((err) => dl.replaceChildren(errorBox(err)));
    return card;
  }

  function ingestCard(src, s) {
    const url = h('input', { type: 'text', id: 'ingest-url', readonly: true, value: s.ingest_url, 'aria-describedby': 'ingest-hint', spellcheck: 'false' });
    const [copy, copied] = copyButton(() => url.value, url, 'URL');
    copy.id = 'copy-url';
    const previous =
      s.previous_token && s.previous_token_expires_at && s.previous_token_expires_at > Date.now()
        ? h('p', { class: 'notice', id: 'previous-token' }, `The previous URL (token ${s.previous_token.slice(0, 8)}…) keeps working until `, when(s.previous_token_expires_at), ` (${ago(s.previous_token_expires_at)}).`)
        : null;
    const own = PASTE[src.template];
    const others = Object.entries(PASTE).filter(([t]) => t !== src.template && t !== 'http');
    return h(
      'section',
      { class: 'card', 'aria-labelledby': 'ingest-title' },
      h('h2', { id: 'ingest-title' }, 'Ingest URL'),
      h('p', { class: 'hint', id: 'ingest-hint' }, `Senders POST events to this URL. It is the credential of ${src.key} in ${s.environment}: keep it private, rotate it below if it leaks.`),
      h('label', { for: 'ingest-url', class: 'visually-hidden' }, 'Ingest URL'),
      h('div', { class: 'copy-row' }, url, copy),
      copied,
      previous,
      h('h3', null, 'Where to paste it'),
      h('dl', { class: 'paste' }, own ? [h('dt', null, own[0]), h('dd', null, own[1])] : null),
      h('details', null, h('summary', null, 'In the other tools'), h('dl', { class: 'paste' }, others.map(([, [name, text]]) => [h('dt', null, name), h('dd', null, text)]))),
    );
  }

  const SCHEME_LABELS = {
    none: 'None: the URL alone is the credential',
    segment_signature: 'Segment signature (X-Signature, HMAC-SHA1)',
    standard_webhooks: 'Standard Webhooks / Svix (webhook-signature)',
    shared_secret_header: 'Shared secret in a header',
    bearer: 'Authorization: Bearer <secret>',
  };

  const PATH_HINTS = {
    event_type: 'Path to the event type (e.g. body.type).',
    fixed_type: 'One type for every item instead (e.g. identify for a user sync).',
    event_name: 'Path to the event name.',
    user_id: 'Path to the user id (e.g. body.row.user_id).',
    timestamp: 'Path to the event time.',
    idempotency_key: 'Path to a key that identifies a delivery (for dedup).',
    data: 'Path to the data object (the whole item when empty).',
    array: 'Path to an array of rows, when one request carries several (e.g. body.records).',
  };

  function settingsForm(base, s, template) {
    const identify = checkbox('Handle identify calls', { name: 'handle_identify', checked: s.handle_identify, id: 'handle-identify', hint: 'Lets identify_user mappings create and update users. Off: they are skipped and users stay as they are.' });
    const dedup = checkbox('Drop duplicates', { name: 'dedup', checked: s.dedup.enabled, id: 'dedup-enabled', hint: 'An event whose idempotency key was seen within the window is logged as duplicate, and nothing runs.' });
    const windowSecs = h('input', { type: 'number', id: 'dedup-window', min: '1', value: String(s.dedup.window_secs) });
    const scheme = select(state.meta.verification_schemes.map((v) => [v, SCHEME_LABELS[v] || v]), s.verification.scheme, { id: 'verification-scheme' });
    const header = h('input', { type: 'text', id: 'verification-header', value: s.verification.header || '', placeholder: 'x-webhook-secret', spellcheck: 'false' });
    const retention = h('input', { type: 'number', id: 'retention-days', min: '1', value: String(s.retention_days) });
    const paths = {};
    const pathFields = state.meta.path_settings.map((p) => {
      paths[p] = h('input', { type: 'text', id: `path-${p}`, value: (s.paths && s.paths[p]) || '', spellcheck: 'false', placeholder: 'template default' });
      return field(p.replace(/_/g, ' '), paths[p], { name: `paths.${p}`, hint: PATH_HINTS[p] });
    });
    const form = h(
      'form',
      { class: 'card', 'aria-labelledby': 'settings-title', id: 'settings-form' },
      h('h2', { id: 'settings-title' }, 'Settings'),
      formError(),
      h('fieldset', null, h('legend', null, 'Users'), identify),
      h('fieldset', null, h('legend', null, 'Deduplication'), dedup, field('Window (seconds)', windowSecs, { name: 'dedup.window_secs', cls: 'narrow' })),
      h(
        'fieldset',
        null,
        h('legend', null, 'Verification'),
        field('Scheme', scheme, { name: 'verification.scheme', hint: 'How a request proves it comes from the sender. Schemes other than none need a secret (below).' }),
        field('Header', header, { name: 'verification.header', hint: 'For a shared secret in a header: its name (x-webhook-secret when empty).' }),
      ),
      h(
        'details',
        { open: ['hightouch', 'census', 'http'].includes(template) ? true : null },
        h('summary', null, 'Paths: where a templated body holds each thing'),
        h('p', { class: 'hint' }, 'Dot paths starting with body. or headers.; empty uses the template’s default.'),
        h('div', { class: 'grid' }, pathFields),
      ),
      h('fieldset', null, h('legend', null, 'Logs'), field('Keep event and action logs for (days)', retention, { name: 'retention_days', cls: 'narrow' })),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Save settings')),
    );
    const num = (v) => (v.trim() === '' ? null : Number.isFinite(Number(v)) ? Number(v) : v);
    onSubmit(form, 'Saving…', async () => {
      const body = {
        handle_identify: identify.input.checked,
        dedup: { enabled: dedup.input.checked, window_secs: num(windowSecs.value) },
        verification: { scheme: scheme.value, header: header.value.trim() || null },
        paths: Object.fromEntries(Object.entries(paths).map(([k, i]) => [k, i.value.trim() || null])),
        retention_days: num(retention.value),
      };
      await api('PATCH', base, body);
      flash('Settings saved.');
      render();
    });
    return form;
  }

  function secretsCard(base, key, env, s) {
    const secrets = s.verification.secrets || [];
    const revealed = state.revealed && state.revealed.where === base ? state.revealed.secret : null;
    state.revealed = null;
    const own = h('input', { type: 'text', id: 'own-secret', autocomplete: 'off', spellcheck: 'false' });
    const add = h(
      'form',
      null,
      formError(),
      field('Your own secret (optional)', own, { name: 'secret', hint: 'At least 8 characters; leave empty to have one generated.' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', disabled: secrets.length >= 2 }, 'Add secret')),
    );
    onSubmit(add, 'Adding…', async () => {
      const body = own.value ? { secret: own.value } : undefined;
      const r = await api('POST', `${base}/secrets`, body);
      state.revealed = { where: base, secret: r.secret };
      flash('Secret added. Copy it now: it is shown only this once.');
      state.focusAfter = '#new-secret';
      render();
    });
    let reveal = null;
    if (revealed) {
      const box = h('input', { type: 'text', readonly: true, value: revealed, id: 'new-secret', spellcheck: 'false' });
      reveal = h(
        'div',
        { class: 'reveal', role: 'alert' },
        h('p', null, h('strong', null, 'New secret — copy it now. '), 'It will not be shown again: afterwards only its first characters are.'),
        h('label', { for: 'new-secret', class: 'visually-hidden' }, 'New secret'),
        h('div', { class: 'copy-row' }, box, copyButton(() => revealed, box, 'secret')),
      );
    }
    return h(
      'section',
      { class: 'card', 'aria-labelledby': 'secrets-title' },
      h('h2', { id: 'secrets-title' }, 'Verification secrets'),
      h('p', { class: 'hint' }, 'Two can be active at once, so a secret rotates without losing events: add the new one, switch the sender, remove the old one.'),
      reveal,
      secrets.length
        ? h(
            'ul',
            { class: 'secrets' },
            secrets.map((hint, i) =>
              h(
                'li',
                { class: 'between' },
                code(hint),
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'danger secondary',
                    onclick: async (e) => {
                      const yes = await confirmDialog({ title: `Remove secret ${hint}?`, text: 'Requests signed with it are refused once it is removed.', confirm: 'Remove secret', danger: true });
                      if (!yes) return;
                      try {
                        await busy(e.target, 'Removing…', () => api('DELETE', `${base}/secrets/${i}`));
                        flash(`Removed the secret ${hint}.`);
                        render();
                      } catch (err) {
                        flash(describe(err), true);
                      }
                    },
                  },
                  'Remove',
                ),
              ),
            ),
          )
        : h('p', { class: 'muted' }, s.verification.scheme === 'none' ? 'No secrets: none are needed while the scheme is “none”.' : 'No secrets: requests are refused until one is added.'),
      add,
    );
  }

  function rotateCard(base, s) {
    const grace = select(
      [
        ['0', 'no time: stop it at once'],
        ['3600', '1 hour'],
        ['86400', '1 day'],
        ['604800', '7 days'],
        ['2592000', '30 days'],
      ],
      '86400',
      { id: 'grace-seconds' },
    );
    const form = h(
      'form',
      { 'aria-labelledby': 'rotate-title' },
      h('h2', { id: 'rotate-title' }, 'Rotate the ingest token'),
      h('p', { class: 'hint' }, 'Issues a new URL. The current one keeps working for the grace period: time to paste the new one into the sender.'),
      formError(),
      field('The current URL keeps working for', grace, { name: 'grace_seconds' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Rotate token')),
    );
    onSubmit(form, 'Rotating…', async () => {
      const label = grace.options[grace.selectedIndex].textContent;
      const yes = await confirmDialog({
        title: 'Issue a new ingest URL?',
        text: grace.value === '0' ? 'The current URL stops working at once: senders still using it are refused.' : `The current URL keeps working for ${label}. Update the sender before then.`,
        confirm: 'Rotate token',
        danger: grace.value === '0',
      });
      if (!yes) return;
      await api('POST', `${base}/rotate-token`, { grace_seconds: Number(grace.value) });
      flash('New ingest URL issued: copy it into the sender.');
      state.focusAfter = '#ingest-url';
      render();
    });
    return h('section', { class: 'card' }, form);
  }

  // ------------------------------------------------------------------ mappings

  function eventLabel(t, name) {
    return name ? `${t} · ${name}` : `${t} · any name`;
  }

  function paramSummary(params) {
    const entries = Object.entries(params || {});
    if (!entries.length) return h('span', { class: 'muted' }, 'defaults');
    return h(
      'ul',
      { class: 'chips' },
      entries.map(([k, v]) => h('li', null, code(`${k} = ${typeof v === 'string' ? v : JSON.stringify(v && 'literal' in v ? v.literal : v)}`))),
    );
  }

  async function pageMappings(page, ctx, query, key, env) {
    await sourceHeader(page, key, env, 'mappings');
    const base = srcEnvPath(key, env);
    const [{ mappings }, { events }] = await Promise.all([api('GET', `${base}/mappings`), api('GET', `${base}/known-events`)]);
    const addLink = h('a', { class: 'button', href: href(['sources', key, env, 'mappings', 'new']) }, 'Add mapping');
    page.append(h('div', { class: 'between' }, h('h2', { class: 'section-title' }, `Mappings in ${env}`), addLink));
    if (!mappings.length) {
      page.append(empty('No mappings yet', 'Events are logged, but nothing runs for them. Add a mapping to trigger a workflow, identify a user or set a tenant when an event comes in.'));
    } else {
      page.append(
        table(
          [
            { label: 'Event', cell: (m) => h('a', { href: href(['sources', key, env, 'mappings', m.id]) }, eventLabel(m.event_type, m.event_name)) },
            { label: 'Action', cell: (m) => code(m.action_type) },
            { label: 'Parameters', cell: (m) => paramSummary(m.parameters) },
            { label: 'Filter', cell: (m) => (m.filter ? code(m.filter) : h('span', { class: 'muted' }, 'none')) },
            { label: 'State', cell: (m) => (m.active ? h('span', { class: 'badge ok' }, 'active') : h('span', { class: 'badge muted' }, 'paused')) },
            {
              label: 'Manage',
              cell: (m) =>
                h(
                  'div',
                  { class: 'actions' },
                  h('a', { class: 'button secondary', href: href(['sources', key, env, 'mappings', m.id]) }, 'Edit'),
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'secondary',
                      onclick: async (e) => {
                        const body = mappingBody(m);
                        body.active = !m.active;
                        try {
                          await busy(e.target, 'Saving…', () => api('PUT', `${base}/mappings/${enc(m.id)}`, body));
                          flash(body.active ? 'Mapping resumed.' : 'Mapping paused: it no longer runs.');
                          render();
                        } catch (err) {
                          flash(describe(err), true);
                        }
                      },
                    },
                    m.active ? 'Pause' : 'Resume',
                  ),
                  h(
                    'button',
                    {
                      type: 'button',
                      class: 'danger secondary',
                      onclick: async (e) => {
                        if (await deleteMapping(e.target, base, m)) render();
                      },
                    },
                    'Delete',
                  ),
                ),
            },
          ],
          mappings,
          { rowAttrs: (m) => ({ 'data-mapping': m.id }) },
        ),
      );
    }
    page.append(h('h2', { class: 'section-title' }, `Known events in ${env}`));
    if (!events.length) {
      page.append(empty('No events received yet', `Send one to the ${env} ingest URL (Setup tab): each event type and name that comes in is listed here, to map.`));
    } else {
      page.append(
        table(
          [
            { label: 'Event', cell: (k) => eventLabel(k.event_type, k.name) },
            { label: 'Seen', cell: (k) => String(k.count) },
            { label: 'Last seen', cell: (k) => when(k.last_seen, true) },
            {
              label: 'Map it',
              cell: (k) => h('a', { class: 'button secondary', href: href(['sources', key, env, 'mappings', 'new'], { event_type: k.event_type, name: k.name || '' }) }, 'Add mapping'),
            },
          ],
          events,
        ),
      );
    }
  }

  function mappingBody(m) {
    const b = { event_type: m.event_type, action_type: m.action_type, parameters: m.parameters || {}, active: m.active };
    if (m.event_name) b.event_name = m.event_name;
    if (m.filter) b.filter = m.filter;
    return b;
  }

  async function deleteMapping(button, base, m) {
    const yes = await confirmDialog({ title: 'Delete this mapping?', text: `${eventLabel(m.event_type, m.event_name)} → ${m.action_type}: it stops running for new events. Its action logs stay.`, confirm: 'Delete mapping', danger: true });
    if (!yes) return false;
    try {
      await busy(button, 'Deleting…', () => api('DELETE', `${base}/mappings/${enc(m.id)}`));
      flash('Mapping deleted.');
      return true;
    } catch (err) {
      flash(describe(err), true);
      return false;
    }
  }

  const PARAM_HINTS = {
    workflow: 'The key of the workflow, as written (e.g. order-completed).',
    recipients: 'A user id, or a list of them.',
    actor: 'The user who caused it.',
    tenant: 'The tenant to trigger in.',
    data: 'The object sent as the workflow’s data.',
    cancellation_key: 'A key a later cancel_workflow names to cancel this run.',
    user_id: 'The user to identify.',
    properties: 'An object of properties to set.',
    tenant_id: 'The tenant to set.',
  };

  // Paths into a normalized event, for the parameter inputs' suggestions.
  function pathsOf(n) {
    const out = [];
    const walk = (prefix, v, depth) => {
      if (out.length > 400 || depth > 5 || v === null || typeof v !== 'object') return;
      const entries = Array.isArray(v) ? (v.length ? [['0', v[0]]] : []) : Object.entries(v);
      for (const [k, child] of entries) {
        if (!k || /[.\s]/.test(k)) continue;
        const p = `${prefix}.${k}`;
        out.push(p);
        walk(p, child, depth + 1);
      }
    };
    for (const root of state.meta.roots) {
      const key = root === 'type' ? 'type' : root;
      const v = n ? n[key] : undefined;
      if (v === null || v === undefined) {
        if (root === 'source' || root === 'environment') out.push(root);
        continue;
      }
      out.push(root);
      if (root === 'data' || root === 'event') walk(root, v, 1);
    }
    return out;
  }

  const literalText = (v) => {
    if (typeof v !== 'string') return JSON.stringify(v);
    try {
      JSON.parse(v);
      return JSON.stringify(v); // "42" stays a string
    } catch (_) {
      return v;
    }
  };

  const parseLiteral = (t) => {
    try {
      return JSON.parse(t);
    } catch (_) {
      return t;
    }
  };

  async function pageMappingForm(page, ctx, query, key, env, id) {
    await sourceHeader(page, key, env, 'mappings');
    const base = srcEnvPath(key, env);
    const [{ events: known }, existing] = await Promise.all([api('GET', `${base}/known-events`), id ? api('GET', `${base}/mappings/${enc(id)}`) : null]);
    const m = existing || { event_type: query.event_type || '', event_name: query.name || '', action_type: 'trigger_workflow', parameters: {}, filter: '', active: true };

    const eventType = h('input', { type: 'text', id: 'mapping-event-type', value: m.event_type, list: 'event-types', required: true, spellcheck: 'false', autocomplete: 'off' });
    const eventName = h('input', { type: 'text', id: 'mapping-event-name', value: m.event_name || '', list: 'event-names', spellcheck: 'false', autocomplete: 'off' });
    const types = [...new Set(['track', 'identify', 'page', 'screen', 'group', 'alias', ...known.map((k) => k.event_type)])];
    const names = [...new Set(known.map((k) => k.name).filter(Boolean))];
    const sampleNote = h('div', { class: 'hint', id: 'sample-note', role: 'status' });
    const pathList = h('datalist', { id: 'event-paths' });

    let knownSelect = null;
    if (known.length) {
      knownSelect = select([['', 'Choose an event that came in…'], ...known.map((k, i) => [String(i), `${eventLabel(k.event_type, k.name)} — ${k.count} seen, last ${ago(k.last_seen)}`])], '', { id: 'known-event' });
      const idx = known.findIndex((k) => k.event_type === m.event_type && (k.name || '') === (m.event_name || ''));
      if (idx >= 0) knownSelect.value = String(idx);
      knownSelect.addEventListener('change', () => {
        const k = known[Number(knownSelect.value)];
        if (!k) return;
        eventType.value = k.event_type;
        eventName.value = k.name || '';
        loadSample();
      });
    }

    const actions = state.meta.actions;
    const action = select(actions.map((a) => [a.type, a.type]), m.action_type, { id: 'mapping-action', required: true });
    const paramsBox = h('div', { id: 'mapping-parameters' });
    const values = {}; // name -> {text, literal}: kept across action changes
    for (const [k, v] of Object.entries(m.parameters || {})) {
      if (typeof v === 'string') values[k] = { text: v, literal: false };
      else if (v && typeof v === 'object' && 'literal' in v) values[k] = { text: literalText(v.literal), literal: true };
      else values[k] = { text: JSON.stringify(v), literal: true };
    }
    const inputs = {};
    const drawParams = () => {
      for (const [k, i] of Object.entries(inputs)) values[k] = { text: i.text.value, literal: i.literal ? i.literal.checked : false };
      for (const k of Object.keys(inputs)) delete inputs[k];
      const spec = (actions.find((a) => a.type === action.value) || { parameters: [] }).parameters;
      paramsBox.replaceChildren(
        ...spec.map((p) => {
          const v = values[p.name] || { text: '', literal: false };
          const text = h('input', {
            type: 'text',
            id: `param-${p.name}`,
            value: v.text,
            spellcheck: 'false',
            autocomplete: 'off',
            list: p.name === 'workflow' ? null : 'event-paths',
            placeholder: p.name === 'workflow' ? 'workflow key' : p.default ? `default: ${p.default}` : 'not set',
          });
          text.dataset.field = `parameters.${p.name}`;
          const hid = `param-${p.name}-hint`;
          text.setAttribute('aria-describedby', hid);
          let literal = null;
          if (p.name !== 'workflow') literal = h('input', { type: 'checkbox', id: `param-${p.name}-literal`, checked: v.literal });
          inputs[p.name] = { text, literal };
          return h(
            'div',
            { class: 'field param' },
            h('label', { for: text.id }, p.name, p.required ? h('span', { class: 'req' }, 'required') : null),
            h('div', { class: 'param-input' }, text, literal ? h('label', { class: 'inline', for: literal.id }, literal, 'literal value') : null),
            h(
              'p',
              { class: 'hint', id: hid },
              PARAM_HINTS[p.name] || '',
              p.default ? ` Empty: ${p.default}.` : '',
            ),
          );
        }),
      );
    };
    action.addEventListener('change', drawParams);
    drawParams();

    const filter = h('input', { type: 'text', id: 'mapping-filter', value: m.filter || '', spellcheck: 'false', autocomplete: 'off', placeholder: 'data.total > 100 and data.plan == "pro"' });
    const active = checkbox('Active', { name: 'active', checked: m.active, id: 'mapping-active', hint: 'A paused mapping is kept but does not run.' });

    async function loadSample() {
      const type = eventType.value.trim();
      const name = eventName.value.trim();
      pathList.replaceChildren(...pathsOf(null).map((p) => h('option', { value: p })));
      if (!type) {
        sampleNote.textContent = '';
        return;
      }
      try {
        const q = new URLSearchParams({ source: key, event_type: type, limit: '1' });
        if (name) q.set('name', name);
        const { events } = await api('GET', `${envPath(env)}/events?${q}`);
        if (!ctx.alive()) return;
        if (!events.length) {
          sampleNote.replaceChildren(`No ${eventLabel(type, name)} event logged in ${env} in the last 30 days: type paths by hand (data.…, event.…, user_id, …).`);
          return;
        }
        const ev = await api('GET', `/v1/events/${enc(events[0].event_id)}`);
        if (!ctx.alive()) return;
        const paths = pathsOf(ev.normalized);
        pathList.replaceChildren(...paths.map((p) => h('option', { value: p })));
        sampleNote.replaceChildren(
          h(
            'details',
            { open: true },
            h('summary', null, `Paths this event offers (${paths.length}), from the latest one, received ${ago(ev.received_at)}`),
            h('ul', { class: 'chips', id: 'offered-paths' }, paths.map((p) => h('li', null, code(p)))),
            h('p', null, h('a', { href: href(['events', ev.event_id]) }, 'Open that event')),
          ),
        );
      } catch (err) {
        sampleNote.textContent = describe(err);
      }
    }
    eventType.addEventListener('change', loadSample);
    eventName.addEventListener('change', loadSample);
    loadSample();

    const form = h(
      'form',
      { class: 'card', id: 'mapping-form', 'aria-labelledby': 'mapping-title' },
      h('h2', { id: 'mapping-title' }, existing ? 'Edit mapping' : 'New mapping'),
      formError(),
      h(
        'fieldset',
        null,
        h('legend', null, 'When this event comes in'),
        knownSelect ? field(`Known events in ${env}`, knownSelect, { hint: 'Fills in the type and name.' }) : h('p', { class: 'hint' }, `No events received in ${env} yet: type the event type and name.`),
        h(
          'div',
          { class: 'row' },
          field('Event type', eventType, { name: 'event_type', required: true, hint: 'track, identify, page, screen, group, alias, or a templated source’s own type.' }),
          field('Event name', eventName, { name: 'event_name', hint: 'For track, page and screen; empty matches every name.' }),
        ),
        h('datalist', { id: 'event-types' }, types.map((t) => h('option', { value: t }))),
        h('datalist', { id: 'event-names' }, names.map((t) => h('option', { value: t }))),
        sampleNote,
      ),
      h('fieldset', null, h('legend', null, 'Do this'),
        field('Action', action, { name: 'action_type' }),
        h('h3', null, 'Parameters'),
        h('p', { class: 'hint' }, 'Each is a path into the event (data.…, event.…, user_id, …: the paths the event offers are suggested), or with “literal value” the value itself (JSON, or plain text). Empty ones use their default.'),
        paramsBox,
        pathList,
      ),
      h('fieldset', null, h('legend', null, 'Only when'), field('Filter', filter, { name: 'filter', hint: 'Optional: a condition on the event, e.g. data.total > 100 and data.plan == "pro".' }), active),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit' }, 'Save mapping'),
        h('a', { class: 'button secondary', href: href(['sources', key, env, 'mappings']) }, 'Cancel'),
        existing
          ? h(
              'button',
              {
                type: 'button',
                class: 'danger secondary',
                onclick: async (e) => {
                  if (await deleteMapping(e.target, base, existing)) go(href(['sources', key, env, 'mappings']));
                },
              },
              'Delete',
            )
          : null,
      ),
    );
    onSubmit(form, 'Saving…', async () => {
      const parameters = {};
      for (const [name, i] of Object.entries(inputs)) {
        const t = i.text.value.trim();
        if (!t) continue;
        parameters[name] = name === 'workflow' ? t : i.literal && i.literal.checked ? { literal: parseLiteral(t) } : t;
      }
      const body = { event_type: eventType.value.trim(), action_type: action.value, parameters, active: active.input.checked };
      if (eventName.value.trim()) body.event_name = eventName.value.trim();
      if (filter.value.trim()) body.filter = filter.value.trim();
      if (existing) await api('PUT', `${base}/mappings/${enc(existing.id)}`, body);
      else await api('POST', `${base}/mappings`, body);
      flash(`Mapping saved: ${eventLabel(body.event_type, body.event_name)} → ${body.action_type}.`);
      go(href(['sources', key, env, 'mappings']));
    });
    page.append(form);
  }

  // ------------------------------------------------------------------ rehearse

  const EXAMPLES = {
    segment: { type: 'track', event: 'Order Completed', userId: 'user-1', messageId: 'rehearsal-1', properties: { total: 42.5 } },
    rudderstack: { type: 'track', event: 'Order Completed', userId: 'user-1', messageId: 'rehearsal-1', properties: { total: 42.5 } },
    hightouch: { type: 'identify', user_id: 'user-1', traits: { email: 'kim@example.org' } },
    census: { type: 'identify', user_id: 'user-1', traits: { email: 'kim@example.org' } },
    http: { type: 'order.completed', user_id: 'user-1', total: 42.5 },
  };

  async function pageRehearse(page, ctx, query, key, env) {
    const src = await sourceHeader(page, key, env, 'rehearse');
    const base = srcEnvPath(key, env);
    const body = h('textarea', { id: 'rehearse-body', spellcheck: 'false', rows: '10', placeholder: JSON.stringify(EXAMPLES[src.template] || EXAMPLES.http, null, 2) });
    const headers = h('textarea', { id: 'rehearse-headers', spellcheck: 'false', rows: '4', placeholder: 'x-signature: …' });
    const result = h('section', { class: 'result', id: 'rehearse-result', 'aria-live': 'polite', 'aria-labelledby': 'rehearse-result-title' });
    const form = h(
      'form',
      { class: 'card', id: 'rehearse-form' },
      h('h2', null, 'Rehearse a request'),
      h('p', { class: 'hint' }, `Runs a body and headers through ${env}’s verification, normalization and current mappings, exactly as the gateway and mapper would. Nothing is written or sent.`),
      formError(),
      field('Body', body, { name: 'body', hint: 'The request body as the sender posts it (its exact bytes count for signatures).' }),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: () => (body.value = JSON.stringify(EXAMPLES[src.template] || EXAMPLES.http, null, 2)) }, 'Insert an example')),
      field('Headers', headers, { name: 'headers', hint: 'One “Name: value” per line, e.g. the signature header.' }),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Rehearse')),
    );
    onSubmit(form, 'Rehearsing…', async () => {
      const hdrs = {};
      const lines = headers.value.split('\n');
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i].trim();
        if (!line) continue;
        const at = line.indexOf(':');
        if (at <= 0) throw new ApiError(0, 'invalid', `line ${i + 1} is not “Name: value”`, { field: 'headers' });
        hdrs[line.slice(0, at).trim()] = line.slice(at + 1).trim();
      }
      if (!body.value.trim()) throw new ApiError(0, 'invalid', 'paste the body of a request', { field: 'body' });
      const r = await api('POST', `${base}/rehearse`, { body: body.value, headers: hdrs });
      result.replaceChildren(...rehearsal(r));
      result.querySelector('h2').focus();
    });
    page.append(form, result);
  }

  function rehearsal(r) {
    const verified = { verified: 'ok', failed: 'bad', not_reached: 'warn' }[r.verification] || 'muted';
    const out = [
      h('h2', { id: 'rehearse-result-title', tabindex: '-1' }, 'Result'),
      h(
        'dl',
        { class: 'props' },
        h('dt', null, 'The gateway would answer'),
        h('dd', { id: 'rehearse-status' }, String(r.status)),
        h('dt', null, 'Verification'),
        h('dd', null, h('span', { class: `badge ${verified}`, id: 'rehearse-verification' }, r.verification)),
        h('dt', null, 'Events'),
        h('dd', null, `${r.events.length} normalized, ${r.rejected.length} rejected`),
      ),
    ];
    if (r.error) out.push(errorBox(new ApiError(r.status, r.error.code, r.error.message)));
    r.events.forEach((e) => {
      const n = e.normalized || {};
      out.push(h('h3', null, `Event ${e.index}: ${eventLabel(n.type, n.name)}`));
      if (!e.actions.length) out.push(h('p', { class: 'muted' }, 'No active mapping matches it: nothing would run.'));
      else
        out.push(
          h(
            'ul',
            { class: 'planned' },
            e.actions.map((a) =>
              h(
                'li',
                { class: 'planned-action' },
                code(a.action_type),
                ' ',
                a.payload ? h('span', { class: 'badge ok' }, 'would run') : h('span', { class: 'badge warn' }, 'would be skipped'),
                a.skip_reason ? ` — ${a.skip_reason}` : '',
                h('details', { open: true }, h('summary', null, a.payload ? 'Payload' : 'Parameters'), json(a.payload || a.parameters)),
              ),
            ),
          ),
        );
      out.push(h('details', { open: true }, h('summary', null, 'Normalized event'), json(n)));
    });
    if (r.rejected.length) {
      out.push(h('h3', null, 'Rejected items'), h('ul', null, r.rejected.map((x) => h('li', null, `Item ${x.index}: `, code(x.code), ` ${x.message}`))));
    }
    return out;
  }

  // ------------------------------------------------------------------ event logs

  function filterForm(fields, query, target) {
    const inputs = {};
    const els = fields.map(([name, label, kind, options]) => {
      let input;
      if (kind === 'select') input = select([['', 'any'], ...options.map((o) => [o, o])], query[name] || '', { id: `filter-${name}` });
      else if (kind === 'time') input = h('input', { type: 'datetime-local', id: `filter-${name}`, value: toLocalInput(query[name]) });
      else input = h('input', { type: 'text', id: `filter-${name}`, value: query[name] || '', spellcheck: 'false' });
      inputs[name] = [input, kind];
      return field(label, input, { name, cls: kind === 'time' ? 'narrow' : '' });
    });
    const form = h(
      'form',
      { class: 'card filters', role: 'search', 'aria-label': 'Filters' },
      formError(),
      h('div', { class: 'row' }, els),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Apply filters'), h('a', { class: 'button secondary', href: `#/${target}` }, 'Clear')),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = {};
      for (const [name, [input, kind]] of Object.entries(inputs)) q[name] = kind === 'time' ? fromLocalInput(input.value) : input.value.trim();
      go(href([target], q));
    });
    return form;
  }

  // The hash's filters (and `limit`, 50 unless given) as the API's query, plus a cursor.
  const listQuery = (query, extra) =>
    new URLSearchParams(Object.entries({ limit: '50', ...query, ...extra }).filter(([k, v]) => v !== '' && v !== undefined && k !== 'follow')).toString();

  async function pageEvents(page, ctx, query) {
    const env = state.env;
    const { sources } = await api('GET', '/v1/sources');
    page.append(
      h('h1', { tabindex: '-1' }, `Events in ${env}`),
      h('p', { class: 'lead' }, 'Every request item the gateway accepted, newest first, with what became of it. Open one for its raw and normalized forms and its action logs.'),
    );
    const form = filterForm(
      [
        ['source', 'Source', 'select', sources.map((s) => s.key)],
        ['event_type', 'Type', 'text'],
        ['name', 'Name', 'text'],
        ['user_id', 'User id', 'text'],
        ['status', 'Status', 'select', state.meta.event_statuses],
        ['since', 'Since', 'time'],
        ['until', 'Until', 'time'],
      ],
      query,
      'events',
    );
    page.append(form);
    await logList(page, ctx, query, {
      form,
      url: (q) => `${envPath(env)}/events?${q}`,
      items: (r) => r.events,
      id: (e) => e.event_id,
      columns: [
        { label: 'Received', cls: 'nowrap', cell: (e) => when(e.received_at) },
        { label: 'Event', cell: (e) => h('a', { href: href(['events', e.event_id]), class: 'event-link' }, e.name || e.event_type || e.event_id) },
        { label: 'Type', cell: (e) => e.event_type || '—' },
        { label: 'Source', cell: (e) => e.source || '—' },
        { label: 'User', cell: (e) => (e.user_id ? h('a', { href: href(['users', e.user_id]) }, e.user_id) : h('span', { class: 'muted' }, 'anonymous')) },
        { label: 'Status', cell: (e) => badge(e.status) },
      ],
      empty: () =>
        empty(
          'No events here',
          Object.keys(query).some((k) => !['follow', 'limit'].includes(k) && query[k])
            ? 'Nothing matches these filters in this time window. Clear the filters or widen the window.'
            : `Nothing has come in to ${env} in the last 30 days. Send an event to a source’s ingest URL (Sources → a source → Copy URL), or switch the environment above.`,
        ),
      canFollow: !query.until,
      followLabel: 'Follow new events',
    });
  }

  // A paged list (events or actions): a table, "Load more" with the API's cursor, and a follow
  // mode that polls the first page and puts what is new on top.
  async function logList(page, ctx, query, o) {
    let first;
    try {
      first = await api('GET', o.url(listQuery(query, {})));
    } catch (err) {
      // A filter the API refuses (422) is shown at its field; the list stays empty.
      if (!(err instanceof ApiError) || err.status !== 422) throw err;
      first = { next_cursor: null };
      o.items = () => [];
      o.canFollow = false;
      setTimeout(() => o.form.isConnected && showError(o.form, err));
    }
    const seen = new Set();
    const wrap = h('div', { class: 'log-list' });
    const status = h('p', { class: 'hint', role: 'status', id: 'follow-status' });
    let tbody = null;
    const rowAttrs = (r) => ({ 'data-id': o.id(r) });
    const put = (items, where) => {
      const fresh = items.filter((r) => !seen.has(o.id(r)));
      fresh.forEach((r) => seen.add(o.id(r)));
      if (!fresh.length) return 0;
      if (!tbody) {
        const t = table(o.columns, [], { rowAttrs });
        tbody = t.querySelector('tbody');
        wrap.replaceChildren(t);
      }
      const rows = fresh.map((r) => tableRow(o.columns, r, rowAttrs));
      if (where === 'top') {
        rows.forEach((row) => row.classList.add('new'));
        tbody.prepend(...rows);
      } else tbody.append(...rows);
      return fresh.length;
    };
    if (o.items(first).length) put(o.items(first), 'bottom');
    else wrap.append(o.empty());

    let cursor = first.next_cursor;
    const more = h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        hidden: !cursor,
        onclick: async () => {
          try {
            const r = await busy(more, 'Loading…', () => api('GET', o.url(listQuery(query, { cursor }))));
            put(o.items(r), 'bottom');
            cursor = r.next_cursor;
            more.hidden = !cursor;
          } catch (err) {
            status.textContent = describe(err);
          }
        },
      },
      'Load more',
    );

    let timer = null;
    const poll = async () => {
      try {
        const r = await api('GET', o.url(listQuery(query, {})));
        if (!ctx.alive()) return;
        const n = put(o.items(r), 'top');
        status.textContent = `Following: checked ${new Date().toLocaleTimeString()}${n ? `, ${n} new` : ''}.`;
      } catch (err) {
        status.textContent = describe(err);
      }
    };
    const follow = h(
      'button',
      {
        type: 'button',
        class: 'secondary',
        id: 'follow',
        'aria-pressed': String(state.follow && o.canFollow),
        disabled: !o.canFollow,
        title: o.canFollow ? null : 'Following needs an open window (no “until”).',
        onclick: () => {
          state.follow = follow.getAttribute('aria-pressed') !== 'true';
          follow.setAttribute('aria-pressed', String(state.follow));
          setFollow(state.follow);
        },
      },
      o.followLabel,
    );
    const setFollow = (on) => {
      if (timer) clearInterval(timer);
      timer = null;
      if (on) {
        timer = setInterval(poll, 2000);
        status.textContent = 'Following: new entries appear on top every 2 seconds.';
      } else status.textContent = '';
    };
    ctx.cleanup(() => timer && clearInterval(timer));
    if (state.follow && o.canFollow) setFollow(true);
    page.append(h('div', { class: 'between' }, h('div', { class: 'actions' }, follow), status), wrap, h('div', { class: 'actions' }, more));
  }

  async function pageEvent(page, ctx, query, id) {
    const e = await api('GET', `/v1/events/${enc(id)}`);
    page.append(
      h('div', { class: 'crumbs' }, h('a', { href: '#/events' }, 'Events'), ' / ', id),
      h('h1', { tabindex: '-1' }, e.name || e.event_type || 'Event', ' ', badge(e.status)),
    );
    const props = [
      ['Event id', code(e.event_id)],
      ['Request id', code(e.request_id)],
      ['Source', h('a', { href: href(['sources', e.source, e.environment]) }, e.source)],
      ['Environment', e.environment],
      ['Type', e.event_type || '—'],
      ['Name', e.name || '—'],
      ['User', e.user_id ? h('a', { href: href(['users', e.user_id]) }, e.user_id) : 'anonymous'],
      ['Received', when(e.received_at)],
      ['Verification', e.verification],
    ];
    if (e.error_code || e.error_message) props.push(['Error', [code(e.error_code || ''), ' ', e.error_message || '']]);
    if (e.duplicate_of) props.push(['Duplicate of', h('a', { href: href(['events', e.duplicate_of]) }, e.duplicate_of)]);
    if (e.ttl) props.push(['Kept for', duration(e.ttl)]);
    const replayStatus = h('p', { class: 'hint', role: 'status', id: 'replay-status' });
    const replay = h(
      'button',
      {
        type: 'button',
        id: 'replay',
        disabled: !e.normalized,
        onclick: async () => {
          const yes = await confirmDialog({
            title: 'Replay this event?',
            text: 'It runs again through the current mappings of its source, for real: workflows are triggered again. The new action logs carry the replay’s id.',
            confirm: 'Replay',
          });
          if (!yes) return;
          try {
            const r = await busy(replay, 'Replaying…', () => api('POST', `${envPath(e.environment)}/replay`, { event_id: e.event_id }));
            const n = r.events.length ? r.events[0].actions : 0;
            replayStatus.textContent = `Replay ${r.replay_id} queued with ${n} action${n === 1 ? '' : 's'}; their logs appear below within seconds.`;
            watchActions(ctx, e, actionsBox, e.actions.length + n);
          } catch (err) {
            replayStatus.textContent = describe(err);
          }
        },
      },
      'Replay',
    );
    const actionsBox = h('div', { id: 'event-actions' }, actionTable(e.actions, e));
    page.append(
      h('section', { class: 'card' }, h('dl', { class: 'props' }, props.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]))),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'actions-title' },
        h('div', { class: 'between' }, h('h2', { id: 'actions-title' }, 'Action logs'), h('div', { class: 'actions' }, replay)),
        replayStatus,
        e.normalized ? null : h('p', { class: 'hint' }, 'Only a normalized event can be replayed.'),
        actionsBox,
      ),
      h('div', { class: 'grid' }, h('section', { class: 'card' }, h('h2', null, 'Raw'), json(e.raw)), h('section', { class: 'card' }, h('h2', null, 'Normalized'), e.normalized ? json(e.normalized) : h('p', { class: 'muted' }, `Not normalized (${e.status}).`))),
    );
  }

  function actionTable(actions, e) {
    if (!actions.length)
      return h(
        'p',
        { class: 'muted empty-actions' },
        e.status === 'processed' ? 'No action ran for this event: no active mapping of its source matched it. Add one on the source’s Mappings page, then replay.' : `No action runs for a ${e.status} event.`,
      );
    return table(
      [
        { label: 'Action', cell: (a) => code(a.action_type) },
        { label: 'Status', cell: (a) => badge(a.status) },
        { label: 'Attempts', cell: (a) => String(a.attempts) },
        { label: 'Updated', cls: 'nowrap', cell: (a) => when(a.updated_at || a.inserted_at) },
        { label: 'Replay', cell: (a) => (a.replay_of ? code(a.replay_of) : '—') },
        {
          label: 'Details',
          cell: (a) => [
            a.error ? h('p', { class: 'field-error' }, a.error) : null,
            h('details', null, h('summary', null, 'Payload and result'), h('h3', null, 'Payload'), json(a.payload), h('h3', null, 'Result'), json(a.result), h('h3', null, 'Parameters'), json(a.parameters)),
          ],
        },
      ],
      actions,
      { rowAttrs: (a) => ({ 'data-action': a.action_type, 'data-status': a.status }) },
    );
  }

  function watchActions(ctx, e, box, want) {
    let tries = 0;
    const t = setInterval(async () => {
      tries++;
      try {
        const fresh = await api('GET', `/v1/events/${enc(e.event_id)}`);
        if (!ctx.alive()) return clearInterval(t);
        box.replaceChildren(actionTable(fresh.actions, fresh));
        if (fresh.actions.length >= want || tries > 20) clearInterval(t);
      } catch (_) {
        clearInterval(t);
      }
    }, 1500);
    ctx.cleanup(() => clearInterval(t));
  }

  // ------------------------------------------------------------------ action logs

  async function pageActions(page, ctx, query) {
    const env = state.env;
    const { sources } = await api('GET', '/v1/sources');
    page.append(
      h('h1', { tabindex: '-1' }, `Actions in ${env}`),
      h('p', { class: 'lead' }, 'What the mappings did: each workflow triggered or cancelled, user identified and tenant set, newest first.'),
    );
    const form = filterForm(
      [
        ['source', 'Source', 'select', sources.map((s) => s.key)],
        ['action_type', 'Action', 'select', state.meta.actions.map((a) => a.type)],
        ['status', 'Status', 'select', state.meta.action_statuses],
        ['workflow', 'Workflow', 'text'],
        ['since', 'Since', 'time'],
        ['until', 'Until', 'time'],
      ],
      query,
      'actions',
    );
    page.append(form);
    await logList(page, ctx, query, {
      form,
      url: (q) => `${envPath(env)}/actions?${q}`,
      items: (r) => r.actions,
      id: (a) => a.action_id,
      columns: [
        { label: 'When', cls: 'nowrap', cell: (a) => when(a.inserted_at) },
        { label: 'Action', cell: (a) => code(a.action_type || '—') },
        { label: 'Status', cell: (a) => badge(a.status) },
        { label: 'Workflow', cell: (a) => a.workflow || '—' },
        { label: 'Source', cell: (a) => a.source || '—' },
        { label: 'Event', cell: (a) => (a.event_id ? h('a', { href: href(['events', a.event_id]) }, 'Open event') : '—') },
      ],
      empty: () =>
        empty(
          'No actions here',
          Object.keys(query).some((k) => !['follow', 'limit'].includes(k) && query[k])
            ? 'Nothing matches these filters in this time window.'
            : `No mapping has run in ${env} in the last 30 days. Add a mapping to a source (Sources → a source → Mappings); the next matching event runs it.`,
        ),
      canFollow: !query.until,
      followLabel: 'Follow new actions',
    });
  }

  // ------------------------------------------------------------------ users

  async function pageUsers(page, ctx, query, id) {
    const env = state.env;
    const input = h('input', { type: 'search', id: 'user-id', value: id || '', required: true, spellcheck: 'false', autocomplete: 'off' });
    const form = h(
      'form',
      { class: 'card', role: 'search', 'aria-label': 'Look up a user' },
      h('div', { class: 'row' }, field('User id', input, { name: 'id' }), h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Look up'))),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (input.value.trim()) go(href(['users', input.value.trim()]));
    });
    page.append(h('h1', { tabindex: '-1' }, id ? `User ${id}` : 'Users'), h('p', { class: 'lead' }, `Users of ${env}, as identify_user mappings created and updated them: look one up by its id (userId).`), form);
    if (!id) return;
    let u;
    try {
      u = await api('GET', `${envPath(env)}/users/${enc(id)}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      page.append(empty(`No user “${id}” in ${env}`, 'Users appear once an identify_user mapping runs for them (a source’s Mappings page; “Handle identify calls” on in its settings). Check the id, or the environment above.'));
      return;
    }
    const fields = Object.entries(u).filter(([k]) => !['id', 'environment', 'properties'].includes(k));
    const custom = Object.entries(u.properties || {});
    page.append(
      h(
        'div',
        { class: 'grid' },
        h(
          'section',
          { class: 'card', id: 'user-fields' },
          h('h2', null, 'Fields'),
          fields.length ? h('dl', { class: 'props' }, fields.map(([k, v]) => [h('dt', null, k), h('dd', null, typeof v === 'string' ? v : JSON.stringify(v))])) : h('p', { class: 'muted' }, 'None set.'),
        ),
        h(
          'section',
          { class: 'card', id: 'user-properties' },
          h('h2', null, 'Custom properties'),
          custom.length ? h('dl', { class: 'props' }, custom.map(([k, v]) => [h('dt', null, k), h('dd', null, typeof v === 'string' ? v : JSON.stringify(v))])) : h('p', { class: 'muted' }, 'None set.'),
        ),
      ),
      h('p', null, h('a', { href: href(['events'], { user_id: id }) }, `Events of ${id}`)),
    );
  }

  // ------------------------------------------------------------------ audit log

  async function pageAudit(page, ctx, query) {
    const days = query.days || '30';
    const { entries } = await api('GET', `/v1/audit?days=${enc(days)}&limit=200`);
    const range = select(
      [
        ['1', 'the last day'],
        ['7', 'the last 7 days'],
        ['30', 'the last 30 days'],
        ['90', 'the last 90 days'],
      ],
      days,
      { id: 'audit-days' },
    );
    range.addEventListener('change', () => go(href(['audit'], { days: range.value })));
    page.append(
      h('h1', { tabindex: '-1' }, 'Audit log'),
      h('p', { class: 'lead' }, 'Every change made through the admin API or this console: who, what, when. Secrets are removed from the bodies.'),
      h('div', { class: 'row' }, field('Show', range, { cls: 'narrow' })),
    );
    if (!entries.length) {
      page.append(empty('No changes in this period', 'Creating, changing or deleting a source, a mapping or a setting is recorded here.'));
      return;
    }
    page.append(
      table(
        [
          { label: 'When', cls: 'nowrap', cell: (x) => when(x.at) },
          { label: 'Who', cell: (x) => code(x.actor) },
          { label: 'What', cell: (x) => [code(x.action), ' ', x.target] },
          { label: 'Status', cell: (x) => String((x.details && x.details.status) || '') },
          { label: 'Request', cell: (x) => (x.details && x.details.request ? h('details', null, h('summary', null, 'Body'), json(x.details.request)) : '—') },
        ],
        entries,
      ),
    );
  }

  // ------------------------------------------------------------------ start

  async function boot() {
    $('#sign-out').addEventListener('click', signOut);
    $('#env-select').addEventListener('change', (e) => {
      const env = e.target.value;
      setEnv(env);
      const { parts, query } = parseHash();
      if (parts[0] === 'sources' && parts[1] && parts[2]) {
        parts[2] = env;
        if (parts[3] === 'mappings' && parts[4]) parts.splice(4); // a mapping belongs to one environment
        go(href(parts, query));
      } else render();
    });
    window.addEventListener('hashchange', render);
    try {
      state.meta = await (await fetch('/console/meta.json', { cache: 'no-store' })).json();
    } catch (e) {
      $('#main').replaceChildren(errorBox(new ApiError(0, 'network', `Could not load the console (${e.message}). Is the admin role running?`)));
      return;
    }
    try {
      const s = await api('GET', '/console/session', undefined, { quiet401: true });
      setSignedIn(s.signed_in);
      if (s.signed_in) {
        state.csrf = s.csrf_token;
        await loadEnvs();
      }
    } catch (err) {
      setSignedIn(false);
      if (err.status !== 401) {
        $('#main').replaceChildren(errorBox(err));
        return;
      }
    }
    render();
  }

  boot();
})();
