// The Agency operator page: chat, agents (with forms from their help), traffic, and
// permission questions. Everything that comes from the space (ids, action names,
// values, errors) is put in the page as text (textContent), never parsed as HTML.
'use strict';

const csrf = document.querySelector('meta[name="csrf-token"]').content;
// The token is now a cookie: it should not stay in the address bar or the history.
history.replaceState(null, '', '/');

const state = {
  me: '',
  waitMs: 5000,
  agents: [],           // [{id, type, local, help}]
  sent: new Map(),      // message id -> {li, timer, form result element}
  questions: [],        // open permission questions, oldest first
  shown: null,          // the question in the dialog
  socket: null,
  view: 'chat',
  paused: false,
  shownRows: 0,
  skipped: 0,
  history: [],
  historyAt: 0,
};

// ---------- helpers ----------

/** An element with properties and children; strings become text nodes. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

const $ = (id) => document.getElementById(id);

/** A value as text: strings as they are, anything else as JSON (indented when long). */
function render(value) {
  if (typeof value === 'string') return value;
  const compact = JSON.stringify(value);
  return compact !== undefined && compact.length > 100 ? JSON.stringify(value, null, 2) : String(compact);
}

async function post(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { /* 204 */ }
  return { ok: response.ok, status: response.status, data };
}

function time(ms) {
  const d = new Date(ms);
  return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

// ---------- tabs ----------

function show(view) {
  state.view = view;
  for (const tab of document.querySelectorAll('.tab')) {
    tab.setAttribute('aria-selected', String(tab.dataset.view === view));
  }
  for (const name of ['chat', 'agents', 'traffic', 'health']) $('view-' + name).hidden = name !== view;
  wish();
  if (view === 'health') startHealth(); else stopHealth();
  if (view === 'chat') $('chat-input').focus();
}

/** Tells the server whether this page shows the traffic, and its filter. */
function wish() {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  state.socket.send(JSON.stringify({
    traffic: state.view === 'traffic',
    filter: { agent: $('filter-agent').value, action: $('filter-action').value },
  }));
}

// ---------- events ----------

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const socket = new WebSocket(scheme + location.host + '/api/events');
  state.socket = socket;
  socket.onopen = () => { $('status').textContent = 'connected'; $('status').className = 'status live'; wish(); };
  socket.onclose = () => {
    $('status').textContent = 'disconnected; retrying…';
    $('status').className = 'status';
    setTimeout(connect, 1000);
  };
  socket.onmessage = (frame) => {
    let event;
    try { event = JSON.parse(frame.data); } catch (_) { return; }
    handlers[event.type]?.(event);
  };
}

const handlers = {
  hello(event) {
    state.me = event.me;
    state.waitMs = event.wait_ms;
    $('me').textContent = 'you are ' + event.me;
    setAgents(event.agents);
    state.questions = [];
    for (const question of event.questions) handlers.question(question);
    if (!state.greeted) {
      state.greeted = true;
      const ids = event.agents.map((a) => a.id).join(', ') || 'none yet';
      info(`you are ${event.me}; agents here: ${ids}. /help for help`);
    }
  },
  agents(event) { setAgents(event.agents); },
  sent: onSent,
  message: onMessage,
  question(event) {
    if (!state.questions.some((q) => q.id === event.id)) state.questions.push(event);
    nextQuestion();
  },
  decided: onDecided,
  viewing(event) { $('traffic-counts').dataset.live = String(event.traffic); },
  traffic: onTraffic,
  missed(event) { info(`${event.count} events were missed: this page fell behind`); },
};

// ---------- chat ----------

function scrollChat() { const log = $('chat-log'); log.scrollTop = log.scrollHeight; }

function info(text) {
  $('chat-log').append(el('li', { class: 'info' }, text));
  scrollChat();
}

function onSent(event) {
  const name = event.action?.name;
  const what = event.line ?? `/${event.to}.${name} ${JSON.stringify(event.action?.args ?? {})}`;
  const li = el('li', { class: 'sent', 'data-id': event.id }, el('span', { class: 'who' }, 'you'), el('span', { class: 'mono' }, what));
  $('chat-log').append(li);
  if (event.expects_reply) {
    const waiting = el('div', { class: 'reply waiting' }, 'waiting for ' + event.to + '…');
    li.append(waiting);
    const entry = state.sent.get(event.id) || {};
    entry.li = li;
    entry.waiting = waiting;
    entry.timer = setTimeout(() => {
      waiting.className = 'reply error';
      waiting.textContent = `no reply from ${event.to}.${name} within ${state.waitMs / 1000} s`;
      if (entry.result) { entry.result.className = 'result error'; entry.result.textContent = waiting.textContent; }
    }, state.waitMs);
    state.sent.set(event.id, entry);
  }
  scrollChat();
}

/** The node showing a reply's value: a table for a help answer, else text. */
function valueNode(value, from) {
  if (value && typeof value === 'object' && !Array.isArray(value) && Object.values(value).every(isHelpEntry) && Object.keys(value).length) {
    const table = el('table', { class: 'help' });
    for (const [name, entry] of Object.entries(value)) {
      const args = Object.entries(entry.args || {}).map(([arg, doc]) => `${arg}: ${doc?.type ?? 'any'}`).join(', ');
      const returns = entry.returns?.type ? ` -> ${entry.returns.type}` : '';
      table.append(el('tr', {}, el('td', { class: 'mono' }, `${name}(${args})${returns}`), el('td', {}, String(entry.description ?? ''))));
    }
    return el('div', {}, `${Object.keys(value).length} actions of ${from}`, table);
  }
  return el('pre', {}, render(value));
}

function isHelpEntry(entry) {
  return entry && typeof entry === 'object' && ('description' in entry || 'args' in entry);
}

function onMessage(event) {
  const asked = event.parent_id ? state.sent.get(event.parent_id) : null;
  let body;
  if ('error' in event) {
    let text = event.error;
    if (event.did_you_mean) text += ` (did you mean "${event.did_you_mean}"?)`;
    body = el('div', { class: 'error' }, text);
  } else if ('value' in event) {
    body = valueNode(event.value, event.from);
  } else if (event.action === 'say') {
    body = el('span', {}, 'says: ', el('span', {}, render(event.args?.content ?? null)));
  } else {
    body = el('span', { class: 'mono' }, `→ ${event.action} ${JSON.stringify(event.args ?? {})}`);
  }
  if (asked && asked.li) {
    clearTimeout(asked.timer);
    asked.waiting?.remove();
    const reply = el('div', { class: 'reply' + ('error' in event ? ' error' : '') }, el('span', { class: 'who' }, event.from + ':'), body);
    asked.li.append(reply);
  } else {
    $('chat-log').append(el('li', { 'data-from': event.from }, el('span', { class: 'who' }, event.from + ':'), body));
  }
  if (asked) {
    asked.reply = event;
    if (asked.result) showResult(asked.result, event);
  }
  scrollChat();
}

/** A reply in a form's result line. */
function showResult(result, event) {
  result.className = 'result' + ('error' in event ? ' error' : '');
  result.textContent = 'error' in event ? event.error : render(event.value ?? null);
}

async function submitLine(line) {
  if (!line.trim()) return;
  state.history.push(line);
  state.historyAt = state.history.length;
  const { ok, data } = await post('/api/line', { line });
  if (!ok) {
    $('chat-log').append(el('li', { class: 'error' }, 'error: ' + (data?.error ?? 'the line was not sent')));
  } else if (data?.text) {
    $('chat-log').append(el('li', { class: 'info' }, el('pre', {}, data.text)));
  }
  scrollChat();
}

// ---------- completion ----------

function actionsOf(id) {
  const agent = state.agents.find((a) => a.id === id);
  return Object.assign({ help: { args: {} } }, agent?.help || {});
}

/** What the text typed so far may become: [{label, text}]. */
function completions(text) {
  if (!text.startsWith('/')) return [];
  const space = text.indexOf(' ');
  if (space < 0) {
    const dot = text.lastIndexOf('.');
    if (dot < 0) {
      const prefix = text.slice(1).toLowerCase();
      return state.agents.filter((a) => a.id.toLowerCase().startsWith(prefix)).map((a) => ({ label: a.id, text: `/${a.id}.` }));
    }
    const agent = text.slice(1, dot);
    const prefix = text.slice(dot + 1);
    return Object.keys(actionsOf(agent)).filter((n) => n.startsWith(prefix)).sort().map((n) => ({ label: `${agent}.${n}`, text: `/${agent}.${n} ` }));
  }
  const target = text.slice(1, space);
  const dot = target.lastIndexOf('.');
  if (dot < 0) return [];
  const entry = actionsOf(target.slice(0, dot))[target.slice(dot + 1)];
  const last = text.slice(text.lastIndexOf(' ') + 1);
  if (!entry || last.includes(':')) return [];
  const used = new Set([...text.matchAll(/\s([^\s:]+):/g)].map((m) => m[1]));
  const head = text.slice(0, text.length - last.length);
  return Object.entries(entry.args || {}).filter(([name]) => !used.has(name) && name.startsWith(last))
    .map(([name, doc]) => ({ label: `${name}: ${doc?.type ?? 'any'}`, text: `${head}${name}:` }));
}

let choices = [];
let chosen = 0;

function showCompletions() {
  const list = $('completions');
  choices = completions($('chat-input').value).slice(0, 12);
  chosen = 0;
  list.replaceChildren(...choices.map((choice, i) => el('li', {
    role: 'option', 'aria-selected': String(i === chosen),
    onmousedown: (e) => { e.preventDefault(); accept(i); },
  }, choice.label)));
  list.hidden = choices.length === 0;
}

function accept(i) {
  if (!choices[i]) return;
  $('chat-input').value = choices[i].text;
  showCompletions();
}

function moveChoice(step) {
  if (!choices.length) return false;
  chosen = (chosen + step + choices.length) % choices.length;
  [...$('completions').children].forEach((li, i) => li.setAttribute('aria-selected', String(i === chosen)));
  return true;
}

// ---------- agents ----------

/**
 * Shows the agents. A card whose agent did not change is kept as it is (with what is
 * typed in its forms); only new or changed cards are built, and only moved nodes move.
 */
function setAgents(agents) {
  state.agents = agents;
  const list = $('agent-list');
  const open = new Set([...list.querySelectorAll('details[open]')].map((d) => d.dataset.key));
  const existing = new Map([...list.children].map((card) => [card.dataset.agent, card]));
  let next = list.firstElementChild;
  for (const agent of agents) {
    const signature = JSON.stringify(agent);
    let card = existing.get(agent.id);
    if (!card || card.dataset.signature !== signature) {
      card?.remove();
      card = agentCard(agent, open);
      card.dataset.signature = signature;
    }
    if (card === next) next = next.nextElementSibling;
    else list.insertBefore(card, next);
    existing.delete(agent.id);
  }
  for (const gone of existing.values()) gone.remove();
}

function agentCard(agent, open) {
  const card = el('article', { class: 'agent', 'data-agent': agent.id },
    el('h3', {}, agent.id),
    el('div', { class: 'kind' }, [agent.type ? `type ${agent.type}` : 'no type known', agent.local ? 'on this host' : 'on another host'].join(' · ')));
  if (!agent.help) {
    card.append(el('p', { class: 'description' }, 'It has not answered help yet.'));
    return card;
  }
  for (const [name, entry] of Object.entries(agent.help)) {
    const key = `${agent.id}\u0000${name}`;
    const details = el('details', { class: 'action', 'data-action': name, 'data-key': key });
    if (open.has(key)) details.open = true;
    const access = entry?.access || 'permitted';
    details.append(el('summary', {}, name, el('span', { class: 'access ' + access }, access)));
    if (entry?.description) details.append(el('p', { class: 'description' }, String(entry.description)));
    details.append(actionForm(agent.id, name, entry || {}));
    card.append(details);
  }
  return card;
}

/** A form for one action: a field per argument, from its JSON Schema (or help type). */
function actionForm(agentId, action, entry) {
  const fields = [];
  const form = el('form', { class: 'action-form' });
  for (const [name, doc] of Object.entries(entry.args || {})) {
    const schema = doc?.schema && Object.keys(doc.schema).length ? doc.schema : { type: doc?.type };
    const field = argField(name, schema, schema, doc?.optional === true || nullable(schema), doc?.description);
    fields.push([name, field]);
    form.append(field.node);
  }
  const result = el('div', { class: 'result', 'aria-live': 'polite' });
  form.append(el('button', { type: 'submit', class: 'primary' }, `Send ${action}`), result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const args = {};
    try {
      for (const [name, field] of fields) {
        const value = field.value();
        if (value !== undefined) args[name] = value;
      }
    } catch (error) {
      result.className = 'result error';
      result.textContent = String(error.message || error);
      return;
    }
    result.className = 'result waiting';
    result.textContent = 'sent; waiting for the answer…';
    const { ok, data } = await post('/api/send', { to: agentId, action: { name: action, args } });
    if (!ok) {
      result.className = 'result error';
      result.textContent = data?.error ?? 'not sent';
      return;
    }
    // The reply may have come before this answer did.
    const entry = state.sent.get(data.id) || {};
    entry.result = result;
    state.sent.set(data.id, entry);
    if (entry.reply) showResult(result, entry.reply);
  });
  return form;
}

function resolve(schema, root) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 32) {
    const match = /^#\/(\$defs|definitions)\/(.+)$/.exec(schema.$ref);
    schema = match && root[match[1]] ? root[match[1]][decodeURIComponent(match[2])] : {};
  }
  return schema || {};
}

/** The schema's one non-null type, looking through `anyOf`/`oneOf` and type lists. */
function kindOf(schema, root) {
  schema = resolve(schema, root);
  const variants = schema.anyOf || schema.oneOf;
  if (variants) {
    const real = variants.map((v) => resolve(v, root)).filter((v) => v.type !== 'null');
    if (real.length === 1) return kindOf(real[0], root);
    return { type: 'any', schema };
  }
  let type = schema.type;
  if (Array.isArray(type)) {
    const real = type.filter((t) => t !== 'null');
    type = real.length === 1 ? real[0] : 'any';
  }
  if (!type && schema.properties) type = 'object';
  return { type: type || 'any', schema };
}

function nullable(schema) {
  const variants = schema.anyOf || schema.oneOf || [];
  return (Array.isArray(schema.type) && schema.type.includes('null')) || variants.some((v) => v.type === 'null');
}

/** A labelled field for an argument or property; optional ones have a switch to include them. */
function argField(name, schema, root, optional, description) {
  const inner = valueField(schema, root);
  const { type } = kindOf(schema, root);
  const label = el('label', {}, name, el('span', { class: 'type' }, type + (optional ? ', optional' : '')));
  const node = el('div', { class: 'field', 'data-arg': name }, label);
  let include = null;
  if (optional) {
    include = el('input', { type: 'checkbox', 'aria-label': `include ${name}`, class: 'include' });
    label.prepend(include);
    inner.node.hidden = true;
    include.addEventListener('change', () => { inner.node.hidden = !include.checked; });
  }
  if (description) node.append(el('span', { class: 'description' }, String(description)));
  node.append(inner.node);
  return { node, value: () => (include && !include.checked ? undefined : inner.value(name)) };
}

/** An input for one value of `schema`: {node, value(name)}. */
function valueField(schema, root) {
  const { type, schema: resolved } = kindOf(schema, root);
  if (resolved.enum) {
    const select = el('select', {}, resolved.enum.map((v) => el('option', { value: JSON.stringify(v) }, render(v))));
    return { node: select, value: () => JSON.parse(select.value) };
  }
  if (type === 'number' || type === 'integer') {
    const input = el('input', { type: 'number', step: type === 'integer' ? '1' : 'any' });
    return {
      node: input,
      value: (name) => {
        if (input.value.trim() === '') throw new Error(`${name}: a number is needed`);
        return Number(input.value);
      },
    };
  }
  if (type === 'string') {
    const input = el('input', { type: 'text', spellcheck: 'false' });
    return { node: input, value: () => input.value };
  }
  if (type === 'boolean') {
    const input = el('input', { type: 'checkbox' });
    return { node: input, value: () => input.checked };
  }
  if (type === 'array' && resolved.items && !Array.isArray(resolved.items)) {
    const items = el('div', { class: 'items' });
    const fields = [];
    const add = el('button', { type: 'button', class: 'add-item' }, '+ item');
    add.addEventListener('click', () => {
      const field = valueField(resolved.items, root);
      const row = el('div', { class: 'item' }, field.node);
      const remove = el('button', { type: 'button', 'aria-label': 'remove item' }, '−');
      remove.addEventListener('click', () => { row.remove(); fields.splice(fields.indexOf(field), 1); });
      row.append(remove);
      fields.push(field);
      items.append(row);
    });
    return { node: el('div', {}, items, add), value: (name) => fields.map((f, i) => f.value(`${name}[${i}]`)) };
  }
  if (type === 'object' && resolved.properties) {
    const required = new Set(resolved.required || []);
    const set = el('fieldset');
    const fields = Object.entries(resolved.properties).map(([prop, sub]) => {
      const field = argField(prop, sub, root, !required.has(prop), resolve(sub, root).description);
      set.append(field.node);
      return [prop, field];
    });
    return {
      node: set,
      value: () => {
        const object = {};
        for (const [prop, field] of fields) {
          const value = field.value();
          if (value !== undefined) object[prop] = value;
        }
        return object;
      },
    };
  }
  const area = el('textarea', { placeholder: 'JSON', spellcheck: 'false' });
  return {
    node: area,
    value: (name) => {
      try { return JSON.parse(area.value); } catch (error) { throw new Error(`${name}: not JSON (${error.message})`); }
    },
  };
}

// ---------- traffic ----------

const MAX_ROWS = 500;

function onTraffic(event) {
  state.skipped += event.skipped;
  if (!state.paused) {
    const rows = $('traffic-rows');
    for (const entry of event.entries) rows.append(trafficRow(entry));
    state.shownRows += event.entries.length;
    while (rows.children.length > MAX_ROWS) {
      const first = rows.firstElementChild;
      if (first.nextElementSibling?.classList.contains('details')) first.nextElementSibling.remove();
      first.remove();
    }
    const wrap = rows.closest('.table-wrap');
    wrap.scrollTop = wrap.scrollHeight;
  } else {
    state.skipped += event.entries.length;
  }
  $('traffic-counts').textContent = `${state.shownRows} shown · ${state.skipped} skipped (sampled: the page shows at most 800 a second)`;
  $('rates').replaceChildren(...event.rates.map(([agent, rate]) => el('li', {}, el('span', {}, agent), el('span', {}, `${rate}/s`))));
}

function trafficRow(entry) {
  if (entry.kind === 'malformed') {
    return el('tr', { class: 'row dead' }, el('td', {}, time(entry.at)), el('td', { colspan: '4' }, 'not a message: ' + entry.body));
  }
  let re = '';
  if (entry.parent_id) {
    re = '#' + String(entry.parent_id).slice(0, 8);
    if (entry.answers) re += ' ' + entry.answers;
    if (typeof entry.latency_ms === 'number') re += ` (${entry.latency_ms.toFixed(1)} ms)`;
  }
  const row = el('tr', { class: 'row' + (entry.kind === 'undeliverable' ? ' dead' : ''), 'data-id': entry.id },
    el('td', {}, time(entry.at)), el('td', {}, entry.from), el('td', {}, entry.to), el('td', {}, entry.action), el('td', {}, re));
  row.addEventListener('click', () => {
    if (row.nextElementSibling?.classList.contains('details')) { row.nextElementSibling.remove(); return; }
    let text = entry.body;
    try { text = JSON.stringify(JSON.parse(entry.body), null, 2); } catch (_) { /* cut or malformed */ }
    if (entry.truncated) text += '\n… (cut: the message is longer)';
    row.after(el('tr', { class: 'details' }, el('td', { colspan: '5' }, el('pre', {}, text))));
  });
  return row;
}

// ---------- permission questions ----------

function nextQuestion() {
  const badge = $('questions-badge');
  badge.hidden = state.questions.length === 0;
  badge.textContent = `${state.questions.length} permission question${state.questions.length === 1 ? '' : 's'}`;
  if (state.shown || state.questions.length === 0) return;
  const question = state.questions[0];
  state.shown = question;
  $('q-from').textContent = question.from;
  $('q-agent').textContent = question.agent;
  $('q-action').textContent = question.action;
  $('q-broadcast').textContent = question.broadcast ? ' (a broadcast)' : '';
  $('q-args').textContent = JSON.stringify(question.args, null, 2);
  $('q-outcome').textContent = '';
  for (const id of ['allow', 'refuse']) $(id).disabled = false;
  const dialog = $('permission');
  if (!dialog.open) dialog.showModal();
}

async function answer(allow) {
  const question = state.shown;
  if (!question) return;
  for (const id of ['allow', 'refuse']) $(id).disabled = true;
  const { ok, data } = await post(`/api/questions/${question.id}`, { allow });
  if (!ok) $('q-outcome').textContent = data?.error ?? 'the answer was not taken';
}

function onDecided(event) {
  const question = state.questions.find((q) => q.id === event.id);
  state.questions = state.questions.filter((q) => q.id !== event.id);
  if (question) {
    const verdict = event.allowed ? 'allowed' : 'refused';
    info(`permission ${verdict} by the ${event.by}: ${question.from} -> ${question.agent}.${question.action} ${JSON.stringify(question.args)}`);
  }
  if (state.shown?.id === event.id) {
    $('q-outcome').textContent = `${event.allowed ? 'Allowed' : 'Refused'} by the ${event.by}.`;
    for (const id of ['allow', 'refuse']) $(id).disabled = true;
    setTimeout(() => {
      state.shown = null;
      if (state.questions.length === 0) $('permission').close();
      nextQuestion();
    }, 1200);
  } else {
    nextQuestion();
  }
}

// ---------- health ----------
// The host's counts (GET /api/health) sampled every second while the view is open, kept
// for 5 minutes, and drawn as small SVG line charts of rates and levels.

const HEALTH_EVERY_MS = 1000;
const HEALTH_KEEP_MS = 5 * 60 * 1000;
const LATENCY_WINDOW = 5; // samples: latency quantiles over the last 5 s
const health = { samples: [], timer: null };

function startHealth() {
  if (health.timer) return;
  sampleHealth();
  health.timer = setInterval(sampleHealth, HEALTH_EVERY_MS);
}

function stopHealth() {
  clearInterval(health.timer);
  health.timer = null;
}

async function sampleHealth() {
  let exposition = null;
  try {
    const response = await fetch('/api/health');
    if (response.ok) exposition = await response.json();
  } catch (_) { /* shown below */ }
  $('health-status').textContent = exposition ? '' : 'the host does not answer';
  if (!exposition) return;
  const now = Date.now();
  health.samples.push({ at: now, x: exposition });
  while (health.samples.length && health.samples[0].at < now - HEALTH_KEEP_MS) health.samples.shift();
  drawHealth(now);
}

/** The value of `pick(sample)` per second between consecutive samples: [[at, rate]]. */
function rates(pick) {
  const points = [];
  for (let i = 1; i < health.samples.length; i++) {
    const [a, b] = [health.samples[i - 1], health.samples[i]];
    const [from, to] = [pick(a.x), pick(b.x)];
    if (from === undefined || to === undefined) continue;
    points.push([b.at, Math.max(0, (to - from) / ((b.at - a.at) / 1000))]);
  }
  return points;
}

/** Every sample's `pick(sample)`: [[at, value]]. */
function levels(pick) {
  return health.samples.map((s) => [s.at, pick(s.x)]);
}

/** The action-duration histograms of every type added up: {count, buckets}. */
function allActions(x) {
  const total = new Map();
  let count = 0;
  for (const type of x.space.types) {
    count += type.action_seconds.count;
    for (const [bound, n] of type.action_seconds.buckets) {
      const key = bound === null ? Infinity : bound;
      total.set(key, (total.get(key) || 0) + n);
    }
  }
  return { count, buckets: [...total.entries()].sort((a, b) => a[0] - b[0]) };
}

/** The duration under which a fraction q of a histogram's observations fell, in ms,
 *  interpolated in its bucket as Prometheus's histogram_quantile does. */
function quantileMs(histogram, q) {
  if (histogram.count <= 0) return null;
  const rank = q * histogram.count;
  let [lower, below] = [0, 0];
  for (const [bound, count] of histogram.buckets) {
    if (count >= rank && count > below) {
      if (bound === Infinity) return lower * 1000;
      return (lower + (bound - lower) * (rank - below) / (count - below)) * 1000;
    }
    [lower, below] = [bound, count];
  }
  return lower * 1000;
}

/** Latency quantile q over the last LATENCY_WINDOW samples at each sample: [[at, ms]]. */
function latency(q) {
  const points = [];
  for (let i = 1; i < health.samples.length; i++) {
    const [a, b] = [allActions(health.samples[Math.max(0, i - LATENCY_WINDOW)].x), allActions(health.samples[i].x)];
    const before = new Map(a.buckets);
    const delta = {
      count: b.count - a.count,
      buckets: b.buckets.map(([bound, n]) => [bound, n - (before.get(bound) || 0)]),
    };
    points.push([health.samples[i].at, quantileMs(delta, q)]);
  }
  return points;
}

function drawHealth(now) {
  const last = health.samples[health.samples.length - 1].x;
  const types = last.space.types.map((t) => t.name);
  const byType = (name) => (x) => x.space.types.find((t) => t.name === name)?.counts.handled;
  chart('chart-rate', now, types.map((name) => ({ name, points: rates(byType(name)) })));
  chart('chart-latency', now, [
    { name: 'p50', points: latency(0.5) },
    { name: 'p99', points: latency(0.99) },
  ]);
  const sum = (x, field) => x.space.types.reduce((total, t) => total + t[field], 0);
  const max = (x, field) => x.space.types.reduce((most, t) => Math.max(most, t[field]), 0);
  chart('chart-mailbox', now, [
    { name: 'in all', points: levels((x) => sum(x, 'mailbox_sum')) },
    { name: 'fullest agent', points: levels((x) => max(x, 'mailbox_max')) },
  ]);
  const reconnects = (x) => x.plugins.reduce((total, [, figures]) =>
    total + figures.counters.filter((c) => c.name.endsWith('_reconnects')).reduce((n, c) => n + c.value, 0), 0);
  chart('chart-faults', now, [
    { name: 'dead letters / s', points: rates((x) => x.space.dead_letters) },
    { name: 'reconnections', points: levels(reconnects) },
  ]);
}

const SVG = 'http://www.w3.org/2000/svg';
const [W, H, LEFT, TOP, BOTTOM] = [600, 150, 44, 8, 18];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A number as the charts label it: 3 significant digits at most. */
function figure(value) {
  if (value === null || value === undefined) return '–';
  if (value >= 100 || value === 0) return String(Math.round(value));
  return value.toPrecision(3).replace(/\.?0+$/, '');
}

/** How far back the charts reach: since the first sample, from 30 s up to 5 minutes. */
function span(now) {
  const first = health.samples.length ? health.samples[0].at : now;
  return Math.min(HEALTH_KEEP_MS, Math.max(30 * 1000, now - first));
}

/** A time span as the charts label it: `-45 s`, `-2.5 min`. */
function ago(ms) {
  return ms < 120 * 1000 ? `-${Math.round(ms / 1000)} s` : `-${figure(ms / 60000)} min`;
}

/** Draws `series` ([{name, points: [[at, value|null]]}]) over the last minutes in the
 *  figure `id`, with a legend of each series' latest value. */
function chart(id, now, series) {
  const figureNode = $(id);
  const unit = figureNode.dataset.unit;
  const top = Math.max(1, ...series.flatMap((s) => s.points.map(([, v]) => v ?? 0))) * 1.1;
  const width = span(now);
  const x = (at) => LEFT + (W - LEFT - 4) * (1 - (now - at) / width);
  const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - v / top);
  const plot = svg('svg', { class: 'plot', viewBox: `0 0 ${W} ${H}`, role: 'img' });
  for (const fraction of [0, 0.5, 1]) {
    const at = y(top * fraction);
    plot.append(svg('line', { class: 'grid', x1: LEFT, x2: W - 4, y1: at, y2: at }));
    plot.append(svg('text', { x: LEFT - 4, y: at + 3, 'text-anchor': 'end' }, figure(top * fraction)));
  }
  for (const back of [width, width / 2, 0]) {
    const anchor = back === width ? 'start' : back === 0 ? 'end' : 'middle';
    plot.append(svg('text', { x: x(now - back), y: H - 4, 'text-anchor': anchor }, back ? ago(back) : 'now'));
  }
  const legend = el('ul', { class: 'legend' });
  series.forEach((s, i) => {
    // A gap (no value) ends one line and starts the next.
    let run = [];
    const flush = () => {
      if (run.length) plot.append(svg('polyline', { class: `line s${i % 6}`, points: run.join(' '), 'data-series': s.name }));
      run = [];
    };
    for (const [at, value] of s.points) {
      if (value === null || value === undefined) flush();
      else run.push(`${x(at).toFixed(1)},${y(value).toFixed(1)}`);
    }
    flush();
    const latest = s.points.length ? s.points[s.points.length - 1][1] : null;
    legend.append(el('li', { 'data-series': s.name, 'data-value': latest ?? '' },
      el('span', { class: `swatch s${i % 6}` }), `${s.name}: ${figure(latest)}${latest === null ? '' : ' ' + unit}`));
  });
  figureNode.replaceChildren(figureNode.querySelector('figcaption'), plot, legend);
}

// ---------- wiring ----------

for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => show(tab.dataset.view));
$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = $('chat-input');
  const line = input.value;
  input.value = '';
  showCompletions();
  submitLine(line);
});
$('chat-input').addEventListener('input', showCompletions);
$('chat-input').addEventListener('keydown', (e) => {
  const input = $('chat-input');
  if (e.key === 'Tab' && choices.length) { e.preventDefault(); accept(chosen); }
  else if (e.key === 'ArrowDown' && moveChoice(1)) e.preventDefault();
  else if (e.key === 'ArrowUp' && moveChoice(-1)) e.preventDefault();
  else if (e.key === 'Escape') { choices = []; $('completions').hidden = true; }
  else if ((e.key === 'ArrowUp' || e.key === 'ArrowDown') && state.history.length) {
    e.preventDefault();
    state.historyAt = Math.max(0, Math.min(state.history.length, state.historyAt + (e.key === 'ArrowUp' ? -1 : 1)));
    input.value = state.history[state.historyAt] ?? '';
  }
});
$('refresh-agents').addEventListener('click', () => post('/api/refresh'));
$('filter-agent').addEventListener('input', wish);
$('filter-action').addEventListener('input', wish);
$('pause').addEventListener('click', () => {
  state.paused = !state.paused;
  $('pause').textContent = state.paused ? 'Resume' : 'Pause';
});
$('clear').addEventListener('click', () => { $('traffic-rows').replaceChildren(); state.shownRows = 0; state.skipped = 0; });
$('allow').addEventListener('click', () => answer(true));
$('refuse').addEventListener('click', () => answer(false));
$('permission').addEventListener('cancel', (e) => e.preventDefault());

connect();
show('chat');
