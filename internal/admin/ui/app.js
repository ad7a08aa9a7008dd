// The dispatcher's dashboard: plain JavaScript over the admin handler's JSON
// endpoints, with no build step and nothing fetched from elsewhere.
//
// Everything the server sends is hostile input (function names, keys, error
// messages and payloads come from whoever enqueued the events), so data only
// ever reaches the page through textContent, attribute values and
// createElement: never innerHTML. The page also runs under a CSP with no
// inline script or style.
'use strict';

(() => {
  // The handler is mounted wherever the application chose (say
  // http.StripPrefix("/admin", ...) at /admin/), so every request is made
  // relative to the page's own path.
  const base = location.pathname.endsWith('/') ? location.pathname : location.pathname + '/';
  const readOnly = document.body.dataset.readonly === 'true';
  const refreshEvery = 2000; // ms
  // Rows a page: ?limit=N in the page's own URL (1 to 1000, as the API
  // takes), so a longer page can be bookmarked; 50 by default.
  const pageSize = Math.min(Math.max(parseInt(new URLSearchParams(location.search).get('limit'), 10) || 50, 1), 1000);

  const $ = (id) => document.getElementById(id);

  // el builds an element: props sets properties (text, className, or any
  // property the element has), children are nodes or strings (as text).
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'text') e.textContent = v;
      else if (k === 'data') Object.assign(e.dataset, v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else e[k] = v;
    }
    e.append(...children.filter((c) => c !== null && c !== undefined));
    return e;
  }

  // api calls the handler: GET without a body, POST with one. It throws an
  // Error carrying the server's {"error": text} when the answer is not 2xx.
  async function api(path, body) {
    const init = { cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(base + path, init);
    } catch (err) {
      throw new Error(`cannot reach the dispatcher (${err.message})`);
    }
    let data = null;
    try {
      data = await resp.json();
    } catch {
      // not JSON: a proxy's error page, say; the status will do
    }
    if (!resp.ok) {
      const text = data && typeof data.error === 'string' ? data.error : resp.statusText;
      throw new Error(`${resp.status}: ${text}`);
    }
    return data;
  }

  // query builds "?a=b&..." from the fields of o that are set.
  function query(o) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(o)) if (v !== '' && v !== undefined && v !== null) q.set(k, v);
    const s = q.toString();
    return s ? '?' + s : '';
  }

  // ---- banners -----------------------------------------------------------

  // An error from the periodic refresh clears itself at the next good one;
  // an error from an action stays until dismissed or the next action.
  let errorFromRefresh = false;
  function showError(err, fromRefresh) {
    $('error-text').textContent = err.message || String(err);
    $('error').hidden = false;
    errorFromRefresh = !!fromRefresh;
  }
  function clearError() {
    $('error').hidden = true;
  }
  $('error-close').addEventListener('click', clearError);

  function notify(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = false;
  }

  // ---- formatting --------------------------------------------------------

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + 's'}`;

  function fmtTime(t) {
    if (!t) return '';
    const d = new Date(t);
    if (isNaN(d) || d.getUTCFullYear() < 2) return ''; // Go's zero time
    return d.toLocaleString();
  }

  // timeCell shows a time locally with its RFC 3339 text as the tooltip.
  function timeCell(t) {
    return el('td', { text: fmtTime(t), title: t || '' });
  }

  function fmtBytes(n) {
    if (typeof n !== 'number') return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
  }

  function fmtError(e) {
    if (!e) return '';
    if (typeof e === 'string') return e;
    return [e.code, e.statusCode ? `(${e.statusCode})` : '', e.message].filter(Boolean).join(' ');
  }

  const fnName = (it) => (it.qualifier ? `${it.function}:${it.qualifier}` : it.function);

  // ---- counts, functions, rates -------------------------------------------

  const countFields = ['ready', 'scheduled', 'leased', 'evicted', 'delivered', 'retried', 'deadLettered', 'cancelled', 'inFlightLimit'];

  function showStats(s) {
    for (const f of countFields) $('count-' + f).textContent = s[f] === undefined ? '–' : String(s[f]);
    $('count-dead').textContent = s.deadLetters === undefined ? '–' : String(s.deadLetters);
    $('count-fileSize').textContent = fmtBytes(s.fileSize);
    $('badge-running').hidden = !s.running;
    $('badge-stopped').hidden = !!s.running;
    $('badge-paused').hidden = !s.paused;
  }

  function showFunctions(items) {
    const rows = items.map((f) => {
      const tr = el('tr', { data: { function: f.function } },
        el('td', { text: f.function }),
        ...['ready', 'scheduled', 'inFlight'].map((k) => el('td', { className: 'num', text: String(f[k]) })),
        // The limit now (throttling lowers it) of the most configured.
        el('td', { className: 'num', text: (f.limit ? String(f.limit) : '–') + (f.maxInFlight ? ` / ${f.maxInFlight}` : ''),
          title: 'in flight at most now (– until sent to) / configured' }),
        el('td', { className: 'num', text: f.perSecond ? String(f.perSecond) : '–' }),
        el('td', { text: f.paused ? 'paused' : '', className: f.paused ? 'paused warn' : 'paused' }),
        ...['delivered', 'deadLettered', 'throttled'].map((k) => el('td', { className: 'num', text: String(f[k]) })));
      if (!readOnly) {
        const verb = f.paused ? 'resume' : 'pause';
        tr.append(el('td', {}, el('button', {
          type: 'button', className: 'action small', text: f.paused ? 'Resume' : 'Pause',
          data: { function: f.function, verb },
          on: { click: () => act(() => api(`functions/${encodeURIComponent(f.function)}/${verb}`, {}),
            (r) => `${r.function} ${r.paused ? 'paused' : 'resumed'}.`) },
        })));
      }
      return tr;
    });
    if (!rows.length) rows.push(el('tr', {}, el('td', { colSpan: 11, className: 'muted', text: 'No functions yet.' })));
    $('functions-rows').replaceChildren(...rows);
    $('function-names').replaceChildren(...items.map((f) => el('option', { value: f.function })));
  }

  const series = [
    ['enqueued', 'Enqueued'],
    ['delivered', 'Delivered'],
    ['deadLettered', 'Dead-lettered'],
    ['retried', 'Retried'],
  ];

  // showRates draws one polyline per series, x by age (15 minutes across),
  // y by events/s scaled to the highest point, and a table of averages.
  // A point counts what happened from the point before it to its age; the
  // last one ends now, so it is usually shorter than intervalSeconds, and
  // one shorter than a second is left out rather than drawn as a spike.
  function showRates(r) {
    const svgNS = 'http://www.w3.org/2000/svg';
    const span = 900;
    const points = [];
    let prevAge = null;
    for (const p of r.points || []) {
      const dur = prevAge === null ? r.intervalSeconds || 10 : prevAge - p.ageSeconds;
      prevAge = p.ageSeconds;
      if (dur >= 1 && p.ageSeconds <= span) points.push({ ...p, dur });
    }
    let top = 0;
    for (const p of points) for (const [k] of series) top = Math.max(top, p[k] / p.dur);
    top = top || 1;
    const nodes = [];
    for (const [y, label] of [[10, top], [110, 0]]) {
      const t = document.createElementNS(svgNS, 'text');
      t.setAttribute('x', '2');
      t.setAttribute('y', String(y));
      t.setAttribute('class', 'axis');
      t.textContent = `${+label.toPrecision(3)}/s`;
      nodes.push(t);
    }
    for (const [k] of series) {
      const line = document.createElementNS(svgNS, 'polyline');
      line.setAttribute('class', 'line-' + k);
      line.setAttribute('points', points.map((p) =>
        `${((span - p.ageSeconds) / span * 600).toFixed(1)},${(115 - p[k] / p.dur / top * 105).toFixed(1)}`).join(' '));
      nodes.push(line);
    }
    $('rates-chart').replaceChildren(...nodes);

    // avg is the rate of k over the points that end within the last
    // seconds.
    const avg = (k, seconds) => {
      const ps = points.filter((p) => p.ageSeconds < seconds);
      const dur = ps.reduce((n, p) => n + p.dur, 0);
      return dur ? (ps.reduce((n, p) => n + p[k], 0) / dur).toFixed(2) : '–';
    };
    $('rates-rows').replaceChildren(...series.map(([k, label]) => el('tr', {},
      el('th', {}, el('span', { className: 'key line-' + k }), label),
      el('td', { className: 'num', text: avg(k, 60) }),
      el('td', { className: 'num', text: avg(k, span) }))));
  }

  // ---- lists -------------------------------------------------------------

  // A list is one tab: its endpoint, the filter last applied, the stack of
  // cursors of the pages shown (the last is this page's "after"), the ids
  // selected, and how to draw a row.
  const lists = {
    events: {
      path: 'events', noun: ['queued event', 'queued events'], detail: true, selectable: !readOnly,
      filter: {}, readFilter: () => ({ function: $('events-function').value.trim(), state: $('events-state').value }),
      columns: [
        ['State', (it) => it.state],
        ['Function', fnName],
        ['Key', (it) => it.key || ''],
        ['Priority', (it) => String(it.priority ?? ''), 'num'],
        ['Attempts', (it) => String(it.attempts), 'num'],
        ['Enqueued', (it) => it.enqueued, 'time'],
        ['Due', (it) => it.due, 'time'],
        ['Last error', (it) => fmtError(it.lastError)],
        ['Size', (it) => fmtBytes(it.size), 'num'],
      ],
    },
    letters: {
      path: 'deadletters', noun: ['dead letter', 'dead letters'], detail: true, selectable: !readOnly,
      filter: {}, readFilter: () => ({ function: $('letters-function').value.trim(), reason: $('letters-reason').value }),
      columns: [
        ['Reason', (it) => it.reason],
        ['Function', fnName],
        ['Key', (it) => it.key || ''],
        ['Attempts', (it) => String(it.attempts), 'num'],
        ['Dead-lettered', (it) => it.deadLettered, 'time'],
        ['Last error', (it) => fmtError(it.lastError)],
        ['Size', (it) => fmtBytes(it.size), 'num'],
      ],
    },
    evictions: {
      path: 'evictions', noun: ['eviction', 'evictions'], detail: false, selectable: false,
      filter: {}, readFilter: () => ({}),
      columns: [
        ['Function', (it) => it.function],
        ['Key', (it) => it.key || ''],
        ['Priority', (it) => String(it.priority ?? ''), 'num'],
        ['Enqueued', (it) => it.enqueued, 'time'],
        ['Evicted', (it) => it.evicted, 'time'],
        ['Reason', (it) => it.reason],
        ['Size', (it) => fmtBytes(it.size), 'num'],
      ],
    },
  };
  for (const [name, l] of Object.entries(lists)) {
    Object.assign(l, { name, cursors: [''], next: '', items: [], selected: new Set() });
  }
  let current = 'events';

  function drawHead(l) {
    const tr = el('tr', {});
    if (l.selectable) {
      tr.append(el('th', {}, el('input', {
        type: 'checkbox', id: l.name + '-select-page', title: 'Select this page',
        on: { change: (ev) => {
          for (const it of l.items) ev.target.checked ? l.selected.add(it.id) : l.selected.delete(it.id);
          drawRows(l);
        } },
      })));
    }
    tr.append(el('th', { text: 'ID' }), ...l.columns.map(([h, , cls]) => el('th', { text: h, className: cls === 'num' ? 'num' : '' })));
    $(l.name + '-head').replaceChildren(tr);
  }

  function drawRows(l) {
    const rows = l.items.map((it) => {
      const tr = el('tr', { data: { id: it.id } });
      if (l.selectable) {
        tr.append(el('td', {}, el('input', {
          type: 'checkbox', checked: l.selected.has(it.id), data: { id: it.id }, title: 'Select',
          on: { change: (ev) => {
            ev.target.checked ? l.selected.add(it.id) : l.selected.delete(it.id);
            drawSelection(l);
          } },
        })));
      }
      tr.append(el('td', {}, l.detail
        ? el('button', { type: 'button', className: 'link', text: it.id, data: { id: it.id }, on: { click: () => openDetail(l, it.id) } })
        : it.id));
      for (const [, get, cls] of l.columns) {
        tr.append(cls === 'time' ? timeCell(get(it)) : el('td', { text: get(it), className: cls === 'num' ? 'num' : '' }));
      }
      return tr;
    });
    if (!rows.length) {
      rows.push(el('tr', {}, el('td', { colSpan: l.columns.length + 2, className: 'muted', text: `No ${l.noun[1]}.` })));
    }
    $(l.name + '-rows').replaceChildren(...rows);
    $(l.name + '-page').textContent = `page ${l.cursors.length}` + (l.items.length ? `, ${plural(l.items.length, l.noun[0], l.noun[1])}` : '');
    $(l.name + '-prev').disabled = l.cursors.length < 2;
    $(l.name + '-first').disabled = l.cursors.length < 2;
    $(l.name + '-next').disabled = !l.next;
    drawSelection(l);
  }

  function drawSelection(l) {
    if (!l.selectable) return;
    const n = l.selected.size;
    $(l.name + '-selected').textContent = `${n} selected`;
    for (const b of document.querySelectorAll(`#panel-${l.name} [id$="-selected"]`)) {
      if (b.tagName === 'BUTTON') b.disabled = n === 0;
    }
    const all = $(l.name + '-select-page');
    if (all) all.checked = l.items.length > 0 && l.items.every((it) => l.selected.has(it.id));
  }

  async function loadList(l) {
    const after = l.cursors[l.cursors.length - 1];
    const page = await api(l.path + query({ ...l.filter, after, limit: pageSize }));
    l.items = page.items || [];
    l.next = page.next || '';
    drawRows(l);
  }

  // userLoad is a list load the user asked for (filter, paging): it drops
  // the selection, which named rows of another page.
  function userLoad(l) {
    l.selected.clear();
    loadList(l).then(clearErrorFromRefresh, (err) => showError(err));
  }

  for (const l of Object.values(lists)) {
    drawHead(l);
    const form = $(l.name + '-filter');
    if (form) {
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        l.filter = l.readFilter();
        l.cursors = [''];
        userLoad(l);
      });
    }
    $(l.name + '-first').addEventListener('click', () => { l.cursors = ['']; userLoad(l); });
    $(l.name + '-prev').addEventListener('click', () => { if (l.cursors.length > 1) l.cursors.pop(); userLoad(l); });
    $(l.name + '-next').addEventListener('click', () => { if (l.next) l.cursors.push(l.next); userLoad(l); });
  }

  function showTab(name) {
    current = name;
    for (const n of Object.keys(lists)) {
      $('tab-' + n).setAttribute('aria-selected', String(n === name));
      $('panel-' + n).hidden = n !== name;
    }
    loadList(lists[name]).catch((err) => showError(err));
  }
  for (const b of document.querySelectorAll('[role=tab]')) b.addEventListener('click', () => showTab(b.dataset.tab));

  // ---- detail ------------------------------------------------------------

  async function openDetail(l, id) {
    let it;
    try {
      it = await api(`${l.path}/${encodeURIComponent(id)}`);
    } catch (err) {
      showError(err);
      return;
    }
    $('detail-title').textContent = `${l === lists.letters ? 'Dead letter' : 'Event'} ${it.id}`;
    const fields = [];
    for (const [k, v] of Object.entries(it)) {
      if (k === 'payload' || k === 'payloadEncoding' || v === null || v === '') continue;
      let text = typeof v !== 'object' ? String(v)
        : Object.entries(v).map(([a, b]) => `${a}: ${typeof b === 'object' ? JSON.stringify(b) : b}`).join(', ');
      if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)) text = `${v} (${fmtTime(v)})`;
      fields.push(el('dt', { text: k }), el('dd', { text }));
    }
    $('detail-fields').replaceChildren(...fields);
    // payloadEncoding says how to read payload: "json" is the payload's
    // own JSON value, "base64" the bytes of a payload that is not JSON.
    const enc = it.payloadEncoding || (typeof it.payload === 'string' ? 'base64' : 'json');
    let label = 'Payload';
    let text;
    if (it.payload === undefined) {
      text = it.size ? '(payload not shown)' : '(empty)';
    } else if (enc === 'json') {
      label = 'Payload (JSON)';
      text = JSON.stringify(it.payload, null, 2);
    } else {
      label = `Payload (${enc}, not JSON)`;
      text = String(it.payload);
    }
    $('detail-payload-label').textContent = label;
    $('detail-payload').textContent = text;
    $('detail').hidden = false;
    $('detail').scrollIntoView({ block: 'nearest' });
  }
  $('detail-close').addEventListener('click', () => { $('detail').hidden = true; });

  // ---- actions -----------------------------------------------------------

  // confirmAction shows text in the page's modal dialog and resolves true
  // on Confirm, false on Cancel or Escape.
  function confirmAction(text, danger) {
    const dlg = $('confirm');
    $('confirm-text').textContent = text;
    $('confirm-ok').classList.toggle('danger', !!danger);
    return new Promise((resolve) => {
      const done = (ok) => {
        $('confirm-ok').removeEventListener('click', yes);
        $('confirm-cancel').removeEventListener('click', no);
        dlg.removeEventListener('cancel', no);
        if (dlg.open) dlg.close();
        resolve(ok);
      };
      const yes = () => done(true);
      const no = (ev) => { if (ev) ev.preventDefault(); done(false); };
      $('confirm-ok').addEventListener('click', yes);
      $('confirm-cancel').addEventListener('click', no);
      dlg.addEventListener('cancel', no); // Escape
      dlg.showModal();
      $('confirm-cancel').focus(); // the safe choice under Enter
    });
  }

  // act runs an action, shows what it did, and refreshes everything.
  async function act(call, describe) {
    clearError();
    $('notice').hidden = true;
    try {
      notify(describe(await call()));
    } catch (err) {
      showError(err);
    }
    await refresh(true);
  }

  // describeFilter says in words what a list's applied filter selects.
  function describeFilter(l) {
    const parts = Object.entries(l.filter).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`);
    return parts.length ? `matching ${parts.join(', ')}` : '';
  }

  // matching is the body selecting what the list's filter selects: every
  // item when no field is set, which the API wants said as {"all": true}.
  function matching(l) {
    const f = Object.fromEntries(Object.entries(l.filter).filter(([, v]) => v));
    return Object.keys(f).length ? { filter: f } : { all: true };
  }

  function bindAction(id, l, { verb, path, key, selected, danger, extra }) {
    const b = $(id);
    if (!b) return; // read-only: the template left the button out
    b.addEventListener('click', async () => {
      let body, what;
      if (selected) {
        const ids = [...l.selected];
        if (!ids.length) return;
        body = { ids };
        what = plural(ids.length, l.noun[0], l.noun[1]);
      } else {
        body = matching(l);
        what = body.all ? `ALL ${l.noun[1]}` : `all ${l.noun[1]} ${describeFilter(l)}`;
      }
      if (!(await confirmAction(`${verb} ${what}?${extra ? ' ' + extra : ''}`, danger))) return;
      await act(() => api(path, body), (r) => {
        if (selected) l.selected.clear();
        return `${verb}: ${plural(r[key], l.noun[0], l.noun[1])}.`;
      });
    });
  }
  const redriveNote = 'They are queued again for their functions.';
  bindAction('letters-redrive-selected', lists.letters, { verb: 'Redrive', path: 'deadletters/redrive', key: 'redriven', selected: true, extra: redriveNote });
  bindAction('letters-redrive-matching', lists.letters, { verb: 'Redrive', path: 'deadletters/redrive', key: 'redriven', extra: redriveNote });
  bindAction('letters-purge-selected', lists.letters, { verb: 'Purge', path: 'deadletters/purge', key: 'purged', selected: true, danger: true, extra: 'This deletes them for good.' });
  bindAction('letters-purge-matching', lists.letters, { verb: 'Purge', path: 'deadletters/purge', key: 'purged', danger: true, extra: 'This deletes them for good.' });
  bindAction('events-cancel-selected', lists.events, { verb: 'Cancel', path: 'events/cancel', key: 'cancelled', selected: true, danger: true, extra: 'They will not be sent.' });
  bindAction('events-cancel-matching', lists.events, { verb: 'Cancel', path: 'events/cancel', key: 'cancelled', danger: true, extra: 'They will not be sent.' });

  // ---- refresh -----------------------------------------------------------

  function clearErrorFromRefresh() {
    if (errorFromRefresh) clearError();
  }

  // refresh reloads the counts, functions and rates, and the list shown
  // unless the user is in the middle of something there (rows selected or
  // the dialog open): a refresh must not undo a selection. force reloads
  // the list anyway (after an action, or the Refresh button) and runs after
  // a refresh in flight rather than joining it.
  let inFlight = null;
  function refresh(force) {
    if (inFlight && !force) return inFlight;
    const run = (inFlight || Promise.resolve()).then(() => reload(force));
    inFlight = run;
    run.finally(() => { if (inFlight === run) inFlight = null; });
    return run;
  }

  async function reload(force) {
    const l = lists[current];
    const dlg = $('confirm');
    const busy = l.selected.size > 0 || (dlg && dlg.open);
    // Each part is shown as soon as it is in; one failing does not keep
    // the others from showing, and the first failure is reported.
    const parts = [
      api('stats').then(showStats),
      api('functions').then((fns) => showFunctions(fns.items || [])),
      api('rates').then(showRates),
      force || !busy ? loadList(l) : null,
    ];
    const failed = (await Promise.allSettled(parts)).find((r) => r.status === 'rejected');
    if (failed) {
      showError(failed.reason, true);
      return;
    }
    const now = new Date();
    $('last-refresh').textContent = now.toLocaleTimeString();
    $('last-refresh').dateTime = now.toISOString();
    clearErrorFromRefresh();
  }

  let timer = 0;
  function schedule() {
    clearTimeout(timer);
    if ($('auto-refresh').checked) timer = setTimeout(tick, refreshEvery);
  }
  async function tick() {
    if (!document.hidden) await refresh(false);
    schedule();
  }
  $('auto-refresh').addEventListener('change', schedule);
  $('refresh').addEventListener('click', () => refresh(true));
  document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });

  refresh(true).then(schedule);
})();
