/* Helpdesk live queue: the client side of docs/agent-protocol.md for the queue page.
 *
 * Plain ES2017, no dependencies, no build step. The table arrives rendered by the server
 * (templates/admin/handoff/queue.html); this script asks for the queue over /ws/agent/,
 * follows `handoff` frames, ticks the waiting times every second, highlights rows waiting
 * longer than their site's alert, and beeps and notifies on new handoffs ("Notify me", saved
 * on the agent's profile).
 * Every piece of user text goes through textContent.
 */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var root = $('hd-queue');
  var cfgEl = $('hd-queue-config');
  if (!root || !cfgEl) return;
  var cfg;
  try { cfg = JSON.parse(cfgEl.textContent) || {}; } catch (e) { console.error('Helpdesk: bad config', e); return; }

  var L = cfg.labels || {};
  var filters = cfg.filters || {};
  var waitAlert = cfg.waitAlert || {};
  var DEFAULT_ALERT = cfg.defaultWaitAlert || 300;
  var PING_MS = 25000;
  var DEAD_MS = 60000;
  // This tab's wish to be available, kept across a reload: the server marks the agent away
  // when their last socket closes, which a reload does for a moment.
  var AVAILABLE_KEY = 'helpdesk:agent:available';
  var OPEN = { waiting: true, assigned: true };

  var tbody = $('hd-queue-rows');
  var emptyEl = $('hd-queue-empty');
  var alertEl = $('hd-alert');
  var connEl = $('hd-connection');
  var notifyBox = $('hd-notify');
  var permissionBtn = $('hd-notify-permission');
  var presenceBox = $('hd-presence');

  // Waiting times tick on the server's clock, not the browser's: cfg.now was read while the
  // page was rendered, which the browser saw as the response's first byte (not as now, which
  // would add the page's load time to every waiting time).
  var skew = 0;
  var serverNow = Date.parse(cfg.now || '');
  if (!isNaN(serverNow)) {
    var seenAt = Date.now();
    try {
      var nav = performance.getEntriesByType('navigation')[0];
      if (nav && nav.responseStart > 0) seenAt = performance.timeOrigin + nav.responseStart;
    } catch (e) { /* no navigation timing: the load time is the error */ }
    skew = serverNow - seenAt;
  }
  function now() { return Date.now() + skew; }

  // ---- small helpers ---------------------------------------------------------------------------
  function make(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function nameOf(x) {
    if (x == null) return '';
    if (typeof x === 'string' || typeof x === 'number') return String(x);
    return x.name || '';
  }
  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = h ? ('0' + m).slice(-2) : String(m);
    return (h ? h + ':' : '') + mm + ':' + ('0' + s).slice(-2);
  }
  function consoleUrl(conversationId) {
    return String(cfg.consoleUrl || '').replace(/0\/$/, encodeURIComponent(String(conversationId)) + '/');
  }
  var alertTimer = 0;
  function showError(text) {
    alertEl.textContent = text;
    alertEl.hidden = false;
    clearTimeout(alertTimer);
    alertTimer = setTimeout(function () { alertEl.hidden = true; alertEl.textContent = ''; }, 15000);
  }

  // ---- rows ------------------------------------------------------------------------------------
  function rowOf(id) { return tbody.querySelector('tr[data-handoff="' + String(Number(id)) + '"]'); }
  function siteId(h) { return h.site && typeof h.site === 'object' ? h.site.id : h.site; }
  function matches(h) {
    if (!OPEN[h.status]) return false;
    if (filters.site && String(siteId(h)) !== String(filters.site)) return false;
    if (filters.state && h.status !== filters.state) return false;
    return true;
  }
  function cell(cls) { return make('td', cls); }

  function buildRow(h) {
    var tr = make('tr', 'hd-row');
    tr.appendChild(cell('hd-col-priority'));
    tr.appendChild(cell('hd-col-site'));
    tr.appendChild(cell('hd-col-wait')).appendChild(make('span', 'hd-wait'));
    tr.appendChild(cell('hd-col-reason'));
    tr.appendChild(cell('hd-col-team'));
    tr.appendChild(cell('hd-col-agent'));
    tr.appendChild(cell('hd-col-status'));
    tr.appendChild(cell('hd-col-actions'));
    fillRow(tr, h);
    return tr;
  }
  function fillRow(tr, h) {
    tr.setAttribute('data-handoff', String(h.id));
    tr.setAttribute('data-conversation', String(h.conversation));
    tr.setAttribute('data-site', String(siteId(h)));
    tr.setAttribute('data-status', h.status || '');
    tr.setAttribute('data-priority', String(h.priority || 0));
    if (h.created_at) tr.setAttribute('data-created-at', h.created_at);
    if (h.claimed_at) tr.setAttribute('data-claimed-at', h.claimed_at); else tr.removeAttribute('data-claimed-at');
    var q = function (cls) { return tr.querySelector('.' + cls); };
    q('hd-col-priority').textContent = String(h.priority || 0);
    q('hd-col-site').textContent = nameOf(h.site);
    var reason = q('hd-col-reason');
    reason.textContent = '';
    reason.appendChild(make('span', 'hd-rule', (L.rules && L.rules[h.rule]) || h.rule || ''));
    if (h.reason) {
      reason.appendChild(document.createTextNode(' '));
      reason.appendChild(make('span', 'hd-reason', h.reason));
    }
    q('hd-col-team').textContent = nameOf(h.team) || L.none;
    q('hd-col-agent').textContent = nameOf(h.agent) || L.none;
    q('hd-col-status').textContent = (L.handoffStatuses && L.handoffStatuses[h.status]) || h.status || '';
    var actions = q('hd-col-actions');
    actions.textContent = '';
    if (h.status === 'waiting') {
      var claim = make('button', 'button hd-claim', L.claim);
      claim.type = 'button';
      claim.disabled = !isLive();
      claim.setAttribute('data-handoff', String(h.id));
      actions.appendChild(claim);
      actions.appendChild(document.createTextNode(' '));
    }
    var open = make('a', 'hd-open', L.open);
    open.href = consoleUrl(h.conversation);
    actions.appendChild(open);
    tick(tr);
  }
  // Highest priority first, then the longest waiting: the order of the server's queue.
  function before(a, b) {
    var pa = Number(a.getAttribute('data-priority')), pb = Number(b.getAttribute('data-priority'));
    if (pa !== pb) return pa > pb;
    return Date.parse(a.getAttribute('data-created-at')) < Date.parse(b.getAttribute('data-created-at'));
  }
  function place(tr) {
    var next = null;
    for (var c = tbody.firstElementChild; c; c = c.nextElementSibling) {
      if (c !== tr && before(tr, c)) { next = c; break; }
    }
    if (tr.parentNode !== tbody || tr.nextElementSibling !== next) tbody.insertBefore(tr, next);
  }
  // Rows already shown keep their place (the server's `queue` order puts the agent's teams
  // first, which a handoff object does not say); new rows go by priority, then age.
  function upsert(h) {
    var tr = rowOf(h.id);
    if (!matches(h)) { if (tr) tr.remove(); refreshEmpty(); return null; }
    if (tr) fillRow(tr, h); else place(tr = buildRow(h));
    refreshEmpty();
    return tr;
  }
  function refreshEmpty() { emptyEl.hidden = !!tbody.firstElementChild; }

  // ---- waiting times and the alert threshold ---------------------------------------------------
  function tick(tr) {
    var created = Date.parse(tr.getAttribute('data-created-at') || '');
    if (isNaN(created)) return;
    var waiting = tr.getAttribute('data-status') === 'waiting';
    var claimed = Date.parse(tr.getAttribute('data-claimed-at') || '');
    var end = waiting || isNaN(claimed) ? now() : claimed;
    var seconds = (end - created) / 1000;
    var wait = tr.querySelector('.hd-wait');
    var text = duration(seconds);
    if (wait.textContent !== text) wait.textContent = text;
    var site = tr.getAttribute('data-site');
    var limit = Object.prototype.hasOwnProperty.call(waitAlert, site) ? waitAlert[site] : DEFAULT_ALERT;
    var overdue = waiting && seconds > limit;
    if ((tr.getAttribute('data-overdue') === 'true') !== overdue) {
      tr.setAttribute('data-overdue', overdue ? 'true' : 'false');
      tr.classList.toggle('hd-overdue', overdue);
    }
  }
  function tickAll() { Array.prototype.forEach.call(tbody.rows, tick); }

  // ---- notifications: a beep and a browser notification on `created` ---------------------------
  // The switch is the agent's profile setting (AgentProfile.notifications), rendered into the
  // page and saved with a `notifications` frame, so it follows the agent to every browser.
  var canNotify = typeof window.Notification === 'function';
  function refreshPermissionButton() {
    permissionBtn.hidden = !(notifyBox.checked && canNotify && Notification.permission === 'default');
  }
  function askPermission() {
    // Browsers only show the prompt from a user's click; both callers are click handlers.
    if (!canNotify || Notification.permission !== 'default') return;
    try {
      var p = Notification.requestPermission(refreshPermissionButton);
      if (p && typeof p.then === 'function') p.then(refreshPermissionButton, refreshPermissionButton);
    } catch (e) { /* very old browser */ }
  }

  var audio = null;
  function unlockAudio() {
    // An AudioContext may only start after a user gesture; make it on the first one.
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      if (!audio) audio = new Ctx();
      if (audio.state === 'suspended') audio.resume();
    } catch (e) { audio = null; }
  }
  function beep() {
    if (!audio) return;
    try {
      var t = audio.currentTime;
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = 'sine';
      osc.frequency.setValueAtTime(880, t);
      osc.frequency.setValueAtTime(660, t + 0.12);
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start(t);
      osc.stop(t + 0.32);
    } catch (e) { /* audio unavailable */ }
  }
  function announce(h) {
    if (!notifyBox.checked) return;
    beep();
    if (!canNotify || Notification.permission !== 'granted') return;
    try {
      var body = nameOf(h.site) + ': ' + ((L.rules && L.rules[h.rule]) || h.rule || '');
      if (h.reason) body += ' · ' + h.reason;
      var n = new Notification(L.newHandoff || 'New handoff', { body: body, tag: 'helpdesk-handoff-' + h.id });
      n.onclick = function () {
        window.focus();
        window.location.href = consoleUrl(h.conversation);
        n.close();
      };
    } catch (e) { /* e.g. a browser that only notifies from a service worker */ }
  }

  notifyBox.checked = cfg.notifyDefault !== false;
  notifyBox.addEventListener('change', function () {
    if (!send({ type: 'notifications', enabled: notifyBox.checked })) {
      notifyBox.checked = !notifyBox.checked;
      showError(L.reconnecting);
      return;
    }
    if (notifyBox.checked) { unlockAudio(); askPermission(); }
    refreshPermissionButton();
  });
  permissionBtn.addEventListener('click', function () { unlockAudio(); askPermission(); });
  document.addEventListener('pointerdown', unlockAudio, { capture: true });
  document.addEventListener('keydown', unlockAudio, { capture: true });
  refreshPermissionButton();

  // ---- the socket (static/helpdesk/reconnecting-socket.js) ----------------------------------
  var socket = window.HelpdeskSocket({
    url: function () {
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + (cfg.wsPath || '/ws/agent/');
    },
    pingMs: PING_MS,
    deadMs: DEAD_MS,
    onConnecting: function () { setConnection('connecting'); },
    onOpen: function () {
      setConnection('live');
      send({ type: 'queue' });
      // Said again on every connection: the server marks us away when our last tab closes.
      if (presenceBox.checked) send({ type: 'presence', online: true });
    },
    onFrame: function (f) { handle(f); },
    onLost: function () { setConnection('down'); },
  });
  function send(obj) { return socket.send(obj); }
  function isLive() { return root.getAttribute('data-connection') === 'live'; }
  function setConnection(state) {
    root.setAttribute('data-connection', state);
    connEl.textContent = state === 'live' ? L.live : state === 'connecting' && !socket.attempts() ? L.connecting : L.reconnecting;
    // A claim needs the socket: the buttons wait for it rather than lose a click.
    Array.prototype.forEach.call(tbody.querySelectorAll('button.hd-claim'), function (b) {
      b.disabled = state !== 'live';
    });
    presenceBox.disabled = state !== 'live';
    notifyBox.disabled = state !== 'live';
  }

  // ---- frames ----------------------------------------------------------------------------------
  function handle(f) {
    switch (f.type) {
      case 'queue':
        if (Array.isArray(f.handoffs)) replaceAll(f.handoffs);
        break;
      case 'handoff':
        if (!f.handoff) break;
        var tr = upsert(f.handoff);
        if (f.event === 'created' && tr) {
          tr.classList.add('hd-new');
          announce(f.handoff);
        }
        break;
      case 'claimed':
        if (f.handoff) upsert(f.handoff);
        break;
      case 'notifications':
        notifyBox.checked = f.enabled === true;
        refreshPermissionButton();
        break;
      case 'error':
        showError(f.message || f.code || 'Error');
        break;
      default: break; // pong
    }
  }
  // The answer to `queue` is the whole truth: rows it does not list are gone.
  function replaceAll(list) {
    var keep = {};
    list.forEach(function (h) {
      if (!h || !matches(h)) return;
      keep[String(h.id)] = true;
      tbody.appendChild(upsert(h)); // in the server's order
    });
    Array.prototype.slice.call(tbody.rows).forEach(function (tr) {
      if (!keep[tr.getAttribute('data-handoff')]) tr.remove();
    });
    refreshEmpty();
  }

  function sessionValue(key, value) {
    try {
      if (value === undefined) return window.sessionStorage.getItem(key);
      window.sessionStorage.setItem(key, value);
    } catch (e) { /* storage blocked */ }
    return null;
  }
  if (sessionValue(AVAILABLE_KEY) === 'on') presenceBox.checked = true;
  presenceBox.addEventListener('change', function () {
    if (!send({ type: 'presence', online: presenceBox.checked })) {
      presenceBox.checked = !presenceBox.checked;
      showError(L.reconnecting);
      return;
    }
    sessionValue(AVAILABLE_KEY, presenceBox.checked ? 'on' : 'off');
  });

  tbody.addEventListener('click', function (e) {
    var btn = e.target.closest ? e.target.closest('button.hd-claim') : null;
    if (!btn) return;
    alertEl.hidden = true;
    if (!send({ type: 'claim', handoff: Number(btn.getAttribute('data-handoff')) })) showError(L.reconnecting);
  });

  setConnection('connecting');
  tickAll();
  refreshEmpty();
  // Twice a second, so a row's clock is never more than half a second behind its seconds;
  // tick() only touches the DOM when the text changes.
  setInterval(tickAll, 500);
  socket.connect();
})();
