/* Helpdesk chat frame: the client side of docs/protocol.md.
 *
 * Plain ES2017, no dependencies. Every piece of message text is rendered with textContent.
 * State kept in localStorage under "helpdesk:<siteKey>:" (token, outbox); memory when blocked.
 */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var cfgEl = $('helpdesk-config');
  var root = $('helpdesk');
  if (!cfgEl || !root) return;
  var cfg;
  try { cfg = JSON.parse(cfgEl.textContent) || {}; } catch (e) { console.error('Helpdesk: bad config', e); return; }

  var logEl = $('helpdesk-log');
  var scroller = $('helpdesk-scroll');
  var typingEl = $('helpdesk-typing');
  var statusEl = $('helpdesk-status');
  var noticeEl = $('helpdesk-notice');
  var form = $('helpdesk-form');
  var input = $('helpdesk-input');
  var closeBtn = $('helpdesk-close');
  var handoffBtn = $('helpdesk-handoff');

  var HOST_ORIGIN = cfg.hostOrigin || '';
  var IN_FRAME = window.parent !== window;
  var MAX_FRAME_BYTES = cfg.maxFrameBytes || 4096;
  var PING_MS = 25000;
  var DEAD_MS = 60000; // nothing received for this long after a ping: the socket is dead
  var TYPING_TIMEOUT_MS = 60000;
  var LABELS = { visitor: 'You', bot: 'Assistant', agent: 'Agent', system: 'Notice' };
  // status -> the translated line shown in the log when the conversation enters it
  var STATUS_LINES = { waiting: 'Waiting', resolved: 'Resolved' };

  // Translated strings come from data-i18n-* attributes on #helpdesk (see frame.html).
  var FALLBACK = {
    Connecting: 'Connecting…', Reconnecting: 'Reconnecting…', Typing: 'Typing…',
    You: 'You', Assistant: 'Assistant', Agent: 'Agent', Notice: 'Notice',
    Interrupted: 'This answer was interrupted', Sending: 'Sending…', Failed: 'Not sent',
    Invalid: 'This message could not be sent.', TooLong: 'This message is too long. Please shorten it.',
    RateLimited: 'You are sending messages too quickly. We will send it shortly.',
    BotUnavailable: 'The assistant cannot answer right now. Your message was saved.',
    Error: 'Something went wrong. Please try again.', Waiting: 'Connecting you to a person…',
    Resolved: 'This conversation has been closed.',
    Close: 'Close', RateAnswer: 'Was this answer helpful?', Helpful: 'Helpful', NotHelpful: 'Not helpful',
    Handoff: 'Talk to a person', Sources: 'Sources:'
  };
  function t(key) {
    var attr = 'i18n' + key; // dataset name of data-i18n-<kebab-key>
    return root.dataset[attr] || FALLBACK[key] || key;
  }

  // ---- storage (localStorage, falling back to memory) -------------------------------------
  var PREFIX = 'helpdesk:' + (cfg.siteKey || '') + ':';
  var memory = {};
  var storageOk = true;
  var store = {
    get: function (k) {
      if (storageOk) {
        try { return window.localStorage.getItem(PREFIX + k); } catch (e) { storageOk = false; }
      }
      return Object.prototype.hasOwnProperty.call(memory, k) ? memory[k] : null;
    },
    set: function (k, v) {
      memory[k] = v;
      if (storageOk) {
        try { window.localStorage.setItem(PREFIX + k, v); } catch (e) { storageOk = false; }
      }
    },
    del: function (k) {
      delete memory[k];
      if (storageOk) {
        try { window.localStorage.removeItem(PREFIX + k); } catch (e) { storageOk = false; }
      }
    }
  };

  function readOutbox() {
    var list;
    try { list = JSON.parse(store.get('outbox') || '[]'); } catch (e) { list = []; }
    if (!Array.isArray(list)) return [];
    return list.filter(function (x) { return x && typeof x.id === 'string' && typeof x.text === 'string'; });
  }
  function writeOutbox(list) {
    if (list.length) store.set('outbox', JSON.stringify(list)); else store.del('outbox');
  }
  function outboxAdd(entry) {
    var list = readOutbox().filter(function (x) { return x.id !== entry.id; });
    list.push(entry);
    writeOutbox(list);
  }
  function outboxTake(id) {
    var list = readOutbox(), found = null;
    id = String(id).toLowerCase();
    writeOutbox(list.filter(function (x) {
      if (x.id.toLowerCase() === id) { found = x; return false; }
      return true;
    }));
    return found;
  }

  // ---- small helpers -------------------------------------------------------------------------
  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') {
      try { return c.randomUUID(); } catch (e) { /* insecure context */ }
    }
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }
  function utf8Length(s) {
    if (window.TextEncoder) return new TextEncoder().encode(s).length;
    return unescape(encodeURIComponent(s)).length;
  }
  function make(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  var SVG_NS = 'http://www.w3.org/2000/svg';
  var ICONS = { // thumbs up / down
    up: 'M7 10v11M7 10l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.4 8a2 2 0 0 1-2 1.7H7M7 21H4a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1h3',
    down: 'M17 14V3M17 14l-4 8a3 3 0 0 1-3-3v-4H4.5a2 2 0 0 1-2-2.3l1.4-8a2 2 0 0 1 2-1.7H17M17 3h3a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1h-3'
  };
  function icon(name) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    var path = svg.appendChild(document.createElementNS(SVG_NS, 'path'));
    path.setAttribute('d', ICONS[name]);
    return svg;
  }
  // An absolute http(s) URL, normalised, or null (javascript:, data:, relative, malformed...).
  function webUrl(u) {
    if (typeof u !== 'string' || !u) return null;
    try {
      var p = new URL(u);
      return p.protocol === 'http:' || p.protocol === 'https:' ? p.href : null;
    } catch (e) { return null; }
  }
  function postHost(msg) {
    if (!IN_FRAME || !HOST_ORIGIN) return;
    try { window.parent.postMessage(msg, HOST_ORIGIN); } catch (e) { /* bad origin */ }
  }

  // ---- scrolling -------------------------------------------------------------------------------
  var stick = true;
  var scrollQueued = false;
  scroller.addEventListener('scroll', function () {
    stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
  }, { passive: true });
  function scrollDown(force) {
    if (force) stick = true;
    if (!stick || scrollQueued) return;
    scrollQueued = true;
    var run = function () { scrollQueued = false; if (stick) scroller.scrollTop = scroller.scrollHeight; };
    if (window.requestAnimationFrame) window.requestAnimationFrame(run); else setTimeout(run, 16);
  }
  window.addEventListener('resize', function () { scrollDown(false); });

  // ---- rendering -------------------------------------------------------------------------------
  var recOf = new WeakMap(); // element -> record
  var bySeq = new Map(); // seq -> record, current conversation only
  var byId = new Map(); // server message id (as a string) -> record, every conversation on screen
  var earlyVotes = new Map(); // message id -> vote from a `feedback` frame that beat its message
  var byClient = new Map(); // client id (lowercase) -> record of the visitor's own message
  var conv = null; // id of the current conversation
  var convStatus = null;
  var lastSeq = 0; // every seq 1..lastSeq of the current conversation is on screen and settled
  var greetingEl = null;

  function newRecord(author) {
    var rec = {
      author: author, seq: null, conv: null, id: null, clientId: null,
      text: '', state: 'complete', final: false, posted: false, noteEl: null,
      vote: null, serverVote: null, inflight: 0, srcEl: null, srcKey: '', fbEl: null, offerEl: null
    };
    var el = make('div', 'hd-msg');
    el.setAttribute('data-author', author);
    var bubble = make('div', 'hd-bubble');
    bubble.appendChild(make('span', 'hd-sr', t(LABELS[author] || 'Notice') + ': '));
    rec.textEl = bubble.appendChild(make('span', 'hd-text'));
    el.appendChild(bubble);
    rec.el = el;
    rec.bubble = bubble;
    recOf.set(el, rec);
    return rec;
  }
  function setText(rec, text) {
    rec.text = String(text == null ? '' : text);
    rec.textEl.textContent = rec.text;
  }
  function appendText(rec, piece) {
    rec.text += piece;
    rec.textEl.appendChild(document.createTextNode(piece));
  }
  // What follows a bubble, in this order: note, sources, feedback buttons, handoff offer.
  var SLOT = { note: 1, sources: 2, feedback: 3, offer: 4 };
  function putAfterBubble(rec, node, slot) {
    node.hdSlot = slot;
    var before = null;
    for (var c = rec.el.firstElementChild; c; c = c.nextElementSibling) {
      if (c !== node && c.hdSlot > slot) { before = c; break; }
    }
    if (node.parentNode !== rec.el || node.nextElementSibling !== before) rec.el.insertBefore(node, before);
  }
  function setId(rec, id) {
    if (id == null) return;
    var key = String(id);
    rec.id = id;
    rec.el.setAttribute('data-message-id', key);
    byId.set(key, rec);
    if (earlyVotes.has(key)) {
      rec.serverVote = earlyVotes.get(key);
      if (!rec.inflight) rec.vote = rec.serverVote;
      earlyVotes.delete(key);
    }
  }
  function setNote(rec, text, kind) {
    if (rec.noteEl) rec.noteEl.removeAttribute('aria-hidden');
    if (!text) {
      if (rec.noteEl) { rec.noteEl.remove(); rec.noteEl = null; }
      return;
    }
    if (!rec.noteEl) {
      rec.noteEl = make('div', 'hd-note');
      putAfterBubble(rec, rec.noteEl, SLOT.note);
    }
    rec.noteEl.textContent = text;
    rec.noteEl.setAttribute('data-note', kind);
  }
  function setSeq(rec, seq) {
    rec.seq = seq;
    rec.conv = conv;
    rec.el.setAttribute('data-seq', String(seq));
    if (conv != null) rec.el.setAttribute('data-conversation', String(conv));
    bySeq.set(seq, rec);
  }
  function setState(rec, state) {
    rec.state = state || 'complete';
    rec.final = rec.state !== 'streaming';
    rec.el.setAttribute('data-state', rec.state);
    if (rec.final) rec.el.removeAttribute('aria-busy'); else rec.el.setAttribute('aria-busy', 'true');
    if (rec.state === 'interrupted') setNote(rec, t('Interrupted'), 'interrupted');
    else if (rec.noteEl && rec.noteEl.getAttribute('data-note') === 'interrupted') setNote(rec, null);
    renderFeedback(rec);
  }

  // ---- sources, feedback and the handoff offer under bot answers -------------------------------
  function setAnswerSource(rec, value) {
    if (typeof value === 'string' && value) rec.el.setAttribute('data-answer-source', value);
  }
  // `list` is [{id, title, url}]; anything but an array (an older server) leaves what is shown.
  function setSources(rec, list) {
    if (!Array.isArray(list)) return;
    var items = list.filter(function (x) {
      return x && typeof x === 'object' && (typeof x.title === 'string' && x.title.trim() || webUrl(x.url));
    });
    var key = JSON.stringify(items);
    if (key === rec.srcKey && (rec.srcEl || !items.length)) return;
    rec.srcKey = key;
    if (rec.srcEl) { rec.srcEl.remove(); rec.srcEl = null; }
    if (!items.length) return;
    var box = make('div', 'hd-sources');
    box.appendChild(make('span', 'hd-sources-label', t('Sources')));
    box.appendChild(document.createTextNode(' '));
    var ul = box.appendChild(make('ul', 'hd-sources-list'));
    items.forEach(function (x) {
      var li = ul.appendChild(make('li', 'hd-source'));
      if (x.id != null) li.setAttribute('data-source-id', String(x.id));
      var href = webUrl(x.url);
      var title = typeof x.title === 'string' && x.title.trim() ? x.title : href;
      if (href) {
        var a = li.appendChild(make('a', 'hd-source-link', title));
        a.href = href;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
      } else {
        li.appendChild(make('span', 'hd-source-title', title));
      }
    });
    rec.srcEl = box;
    putAfterBubble(rec, box, SLOT.sources);
  }
  function normVote(v) { return v === 'up' || v === 'down' ? v : null; }
  function canVote(rec) {
    return rec.author === 'bot' && rec.seq != null && rec.id != null && rec.state === 'complete';
  }
  function withPerson() { return convStatus === 'waiting' || convStatus === 'human'; }
  function renderFeedback(rec) {
    if (!canVote(rec)) {
      if (rec.fbEl) { rec.fbEl.remove(); rec.fbEl = null; }
      if (rec.offerEl) { rec.offerEl.remove(); rec.offerEl = null; }
      rec.el.removeAttribute('data-feedback');
      return;
    }
    if (!rec.fbEl) {
      var group = make('div', 'hd-feedback');
      group.setAttribute('role', 'group');
      group.setAttribute('aria-label', t('RateAnswer'));
      [['up', 'Helpful'], ['down', 'NotHelpful']].forEach(function (pair) {
        var b = make('button', 'hd-vote');
        b.type = 'button';
        b.setAttribute('data-vote', pair[0]);
        b.setAttribute('aria-label', t(pair[1]));
        b.title = t(pair[1]);
        b.appendChild(icon(pair[0]));
        b.addEventListener('click', function () { castVote(rec, rec.vote === pair[0] ? null : pair[0]); });
        group.appendChild(b);
      });
      rec.fbEl = group;
      putAfterBubble(rec, group, SLOT.feedback);
    }
    Array.prototype.forEach.call(rec.fbEl.children, function (b) {
      b.setAttribute('aria-pressed', b.getAttribute('data-vote') === rec.vote ? 'true' : 'false');
    });
    if (rec.vote) rec.el.setAttribute('data-feedback', rec.vote); else rec.el.removeAttribute('data-feedback');
    renderOffer(rec);
  }
  // "Talk to a person" right under an answer voted "Not helpful", while no person is involved yet.
  function renderOffer(rec) {
    var show = canVote(rec) && rec.vote === 'down' && !withPerson();
    if (!show) {
      if (rec.offerEl) { rec.offerEl.remove(); rec.offerEl = null; }
      return;
    }
    if (!rec.offerEl) {
      var b = make('button', 'hd-offer', t('Handoff'));
      b.type = 'button';
      b.setAttribute('data-reason', 'feedback');
      b.addEventListener('click', function () { requestHandoff('feedback'); });
      rec.offerEl = b;
      putAfterBubble(rec, b, SLOT.offer);
      scrollDown(false);
    }
    setBusy(rec.offerEl, handoffPending);
  }
  function setBusy(button, busy) {
    if (busy) button.setAttribute('aria-disabled', 'true'); else button.removeAttribute('aria-disabled');
  }
  function setVisitorStatus(rec, status) {
    rec.status = status;
    rec.el.setAttribute('data-status', status);
    if (status === 'pending') {
      setNote(rec, t('Sending'), 'sending');
      rec.noteEl.setAttribute('aria-hidden', 'true');
    }
    else if (status === 'sent' && rec.noteEl && rec.noteEl.getAttribute('data-note') === 'sending') setNote(rec, null);
  }
  function setTime(rec, iso) {
    if (!iso) return;
    var d = new Date(iso);
    if (!isNaN(d.getTime())) {
      rec.bubble.title = d.toLocaleString(document.documentElement.lang || undefined);
      rec.el.setAttribute('data-created', iso);
    }
  }
  function isPending(rec) { return rec.author === 'visitor' && rec.seq == null && rec.status === 'pending'; }

  // Insert (or move) a record so that the log stays ordered by seq within its conversation.
  // Pending bubbles (no seq yet) stay last; older conversations and notices stay above.
  function place(rec) {
    var before = null;
    var node = logEl.lastElementChild;
    while (node) {
      var other = node !== rec.el && recOf.get(node);
      if (node !== rec.el) {
        if (!other) break;
        if (rec.seq != null) {
          if (isPending(other) || (other.conv === rec.conv && other.seq != null && other.seq > rec.seq)) {
            before = node;
          } else break;
        } else break;
      }
      node = node.previousElementSibling;
    }
    if (rec.el.parentNode === logEl && (rec.el.nextElementSibling === before)) return;
    logEl.insertBefore(rec.el, before);
    scrollDown(false);
  }
  function showGreeting(text) {
    text = text || cfg.greeting;
    if (!text) return;
    if (!greetingEl) {
      var rec = newRecord('bot');
      greetingEl = rec.el;
      greetingEl.setAttribute('data-greeting', '');
      recOf.delete(greetingEl);
      greetingEl.__text = rec.textEl;
      logEl.insertBefore(greetingEl, logEl.firstChild);
    }
    greetingEl.__text.textContent = text;
  }
  function statusLine(status) {
    var key = STATUS_LINES[status];
    if (!key) return;
    var last = logEl.lastElementChild;
    if (last && last.getAttribute('data-notice') === status) return;
    var line = make('div', 'hd-line', t(key));
    line.setAttribute('data-notice', status);
    logEl.appendChild(line);
    scrollDown(false);
  }

  // ---- typing indicator, status and notices ----------------------------------------------------
  var typingTimer = 0;
  function showTyping() {
    typingEl.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, TYPING_TIMEOUT_MS);
    scrollDown(false);
  }
  function hideTyping() {
    clearTimeout(typingTimer);
    typingEl.hidden = true;
  }
  var statusTimer = 0;
  function setStatus(text, delay) {
    clearTimeout(statusTimer);
    var apply = function () { statusEl.textContent = text || ''; };
    if (text && delay) statusTimer = setTimeout(apply, delay); else apply();
  }
  var noticeTimer = 0;
  function notice(text) {
    clearTimeout(noticeTimer);
    noticeEl.textContent = '';
    noticeEl.appendChild(make('span', 'hd-notice-text', text));
    var dismiss = make('button', 'hd-notice-close', '×');
    dismiss.type = 'button';
    dismiss.setAttribute('aria-label', t('Close'));
    dismiss.addEventListener('click', hideNotice);
    noticeEl.appendChild(dismiss);
    noticeEl.hidden = false;
    noticeTimer = setTimeout(hideNotice, 8000);
  }
  function hideNotice() {
    clearTimeout(noticeTimer);
    noticeEl.hidden = true;
    noticeEl.textContent = '';
  }

  // ---- host page -------------------------------------------------------------------------------
  var isOpen = IN_FRAME ? null : true; // null: the host has not told us yet
  var unread = 0;
  var initialSynced = false; // the first replay since load (or reset) is history, not news

  function announce(rec) {
    if (rec.posted) return;
    rec.posted = true;
    postHost({ helpdesk: 'message', message: { author: rec.author, text: rec.text, id: rec.id, seq: rec.seq } });
    if (rec.author !== 'visitor' && isOpen !== true) {
      unread += 1;
      postHost({ helpdesk: 'unread', count: unread });
    }
  }
  function clearUnread() {
    if (!unread) return;
    unread = 0;
    postHost({ helpdesk: 'unread', count: 0 });
  }

  // ---- the socket ------------------------------------------------------------------------------
  var ws = null;
  var wsReady = false;
  var everReady = false;
  var attempts = 0;
  var reconnectTimer = 0;
  var pingTimer = 0;
  var lastRx = 0;
  var resumeInFlight = false;
  var resumeAfter = -1; // the `after` of the resume in flight
  var stalledAfter = -1; // a resume from here brought nothing new; do not repeat it
  var seqAtResume = 0;
  var pendingAttrs = null;
  var retryTimer = 0;
  var retryDelay = 5000;
  var token = store.get('token');

  function wsUrl() {
    var path = cfg.wsPath || ('/ws/widget/' + encodeURIComponent(cfg.siteKey || '') + '/');
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
  }
  function sendFrame(obj) {
    if (!ws || ws.readyState !== 1) return false;
    try { ws.send(JSON.stringify(obj)); return true; } catch (e) { return false; }
  }
  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    if (ws) return;
    root.setAttribute('data-connection', 'connecting');
    setStatus(everReady ? t('Reconnecting') : t('Connecting'), everReady ? 0 : 800);
    var sock;
    try { sock = new WebSocket(wsUrl()); } catch (e) { scheduleReconnect(); return; }
    ws = sock;
    sock.onopen = function () {
      if (ws !== sock) return;
      lastRx = Date.now();
      var hello = { type: 'hello', token: token || null, after: lastSeq, language: navigator.language || cfg.language || '' };
      var ref = document.referrer;
      if (ref && /^https?:/i.test(ref) && ref.length <= 2000) hello.page_url = ref;
      sendFrame(hello);
      clearInterval(pingTimer);
      pingTimer = setInterval(ping, PING_MS);
    };
    sock.onmessage = function (e) {
      if (ws !== sock) return;
      lastRx = Date.now();
      if (typeof e.data !== 'string') return;
      var f;
      try { f = JSON.parse(e.data); } catch (err) { return; }
      if (!f || typeof f.type !== 'string') return;
      try { handle(f); } catch (err) { console.error('Helpdesk: cannot handle', f.type, err); }
    };
    sock.onclose = function () {
      if (ws !== sock) return;
      lost();
    };
  }
  function ping() {
    if (!ws) return;
    if (Date.now() - lastRx > DEAD_MS) { drop(); lost(); return; }
    sendFrame({ type: 'ping' });
  }
  function drop() {
    var sock = ws;
    ws = null;
    wsReady = false;
    clearInterval(pingTimer);
    if (sock) {
      sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
      try { sock.close(); } catch (e) { /* already closed */ }
    }
  }
  function lost() {
    ws = null;
    wsReady = false;
    resumeInFlight = false;
    clearInterval(pingTimer);
    hideTyping();
    root.setAttribute('data-connection', 'down');
    setStatus(everReady ? t('Reconnecting') : t('Connecting'), everReady ? 0 : 800);
    scheduleReconnect();
  }
  function scheduleReconnect() {
    if (reconnectTimer) return;
    var delay = Math.min(10000, 500 * Math.pow(2, attempts));
    attempts += 1;
    delay += Math.random() * delay * 0.3;
    reconnectTimer = setTimeout(connect, delay);
  }
  function reconnectNow() {
    if (ws) return;
    attempts = 0;
    connect();
  }
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible') reconnectNow();
  });

  // ---- conversation tracking -------------------------------------------------------------------
  function switchConversation(id) {
    if (id === conv) return;
    conv = id;
    bySeq = new Map();
    lastSeq = 0;
    resumeInFlight = false;
    stalledAfter = -1;
    convStatus = null;
    root.setAttribute('data-status', '');
    updateHandoff();
  }
  function follow(conversation) {
    if (conversation != null && conversation !== conv) switchConversation(conversation);
  }
  function advance() {
    var next = bySeq.get(lastSeq + 1);
    while (next && next.final) {
      lastSeq += 1;
      next = bySeq.get(lastSeq + 1);
    }
  }
  function maxSeen() {
    var m = 0;
    bySeq.forEach(function (_, seq) { if (seq > m) m = seq; });
    return m;
  }
  function hasGap(upTo) {
    for (var s = lastSeq + 1; s < upTo; s++) if (!bySeq.has(s)) return true;
    return false;
  }
  function resume() {
    if (resumeInFlight || !wsReady || lastSeq === stalledAfter) return;
    resumeInFlight = true;
    resumeAfter = lastSeq;
    seqAtResume = maxSeen();
    sendFrame({ type: 'resume', after: lastSeq });
  }
  function checkGap(seq) {
    if (seq > lastSeq + 1 && !replaying && hasGap(seq)) resume();
  }
  var replaying = false;
  var knownSeq = 0; // the conversation's seq as the server last told us

  // ---- frames ----------------------------------------------------------------------------------
  function handle(f) {
    switch (f.type) {
      case 'ready': return onReady(f);
      case 'ack': return onAck(f);
      case 'message': return onMessage(f);
      case 'typing': return onTyping(f);
      case 'delta': return onDelta(f);
      case 'done': return onDone(f);
      case 'synced': return onSynced(f);
      case 'status': return onStatus(f);
      case 'feedback': return onFeedback(f);
      case 'error': return onError(f);
      default: return undefined; // pong and anything newer
    }
  }

  function onReady(f) {
    if (typeof f.token === 'string' && f.token) {
      token = f.token;
      store.set('token', token);
    }
    wsReady = true;
    everReady = true;
    attempts = 0;
    replaying = true;
    root.setAttribute('data-connection', 'ready');
    setStatus('');
    var c = f.conversation;
    if (c && c.id != null) {
      // A new conversation (the old one was resolved): the `after` of our hello counted the old
      // one, so onSynced finds seqs missing below knownSeq and resumes this one from 0.
      switchConversation(c.id);
      convStatus = c.status || null;
      root.setAttribute('data-status', convStatus || '');
      knownSeq = c.seq || 0;
    } else {
      knownSeq = 0;
    }
    var hasHistory = !!logEl.querySelector('.hd-msg[data-seq]');
    if (!c || !c.seq) {
      if (!hasHistory) showGreeting(f.greeting);
    } else if (greetingEl && !hasHistory) {
      greetingEl.remove(); // shown before we knew this visitor already has a conversation
      greetingEl = null;
    }
    flushOutbox();
    flushAttributes();
    resendVotes();
    if (handoffQueued && sendFrame({ type: 'handoff', reason: handoffQueued })) handoffQueued = null;
    updateHandoff();
    postHost({ helpdesk: 'ready' });
  }

  function onSynced(f) {
    replaying = false;
    if (f.conversation != null) follow(f.conversation);
    if (typeof f.seq === 'number' && f.conversation === conv && f.seq > knownSeq) knownSeq = f.seq;
    if (resumeInFlight) {
      resumeInFlight = false;
      if (maxSeen() <= seqAtResume && lastSeq === resumeAfter) stalledAfter = resumeAfter;
    }
    if (!initialSynced) {
      initialSynced = true;
      if (convStatus === 'waiting') statusLine('waiting');
    }
    var top = Math.max(maxSeen(), knownSeq);
    if (conv != null && hasGap(top + 1)) resume();
    scrollDown(false);
  }

  function onAck(f) {
    var id = String(f.id || '').toLowerCase();
    var entry = outboxTake(id);
    retryDelay = 5000;
    follow(f.conversation);
    var rec = byClient.get(id);
    var existing = typeof f.seq === 'number' ? bySeq.get(f.seq) : null;
    if (existing && rec && existing !== rec) { rec.el.remove(); rec = existing; }
    if (!rec) rec = existing;
    if (!rec) {
      if (!entry) return; // the message frame will render it
      rec = renderVisitor(id, entry.text);
    }
    byClient.set(id, rec);
    rec.clientId = id;
    rec.el.setAttribute('data-client-id', id);
    if (f.message_id != null) setId(rec, f.message_id);
    if (typeof f.seq === 'number') setSeq(rec, f.seq);
    setState(rec, 'complete');
    setVisitorStatus(rec, 'sent');
    place(rec);
    advance();
    if (typeof f.seq === 'number') checkGap(f.seq);
    announce(rec);
    if (!f.duplicate && (convStatus == null || convStatus === 'bot')) showTyping();
    if (knownSeq < (f.seq || 0)) knownSeq = f.seq;
  }

  function onMessage(f) {
    var m = f.message;
    if (!m || typeof m.seq !== 'number') return;
    follow(f.conversation);
    var author = LABELS[m.author] ? m.author : 'system';
    var rec = bySeq.get(m.seq);
    var cid = m.client_id ? String(m.client_id).toLowerCase() : null;
    var own = null;
    if (cid && author === 'visitor') {
      own = byClient.get(cid) || null;
      if (own && rec && own !== rec) { own.el.remove(); own = rec; }
      if (!rec && own && own.seq != null && own.conv === conv && own.seq !== m.seq) own = null;
      if (own) rec = own;
      outboxTake(cid);
    }
    var fresh = !rec;
    if (fresh) rec = newRecord(author);
    if (m.id != null) setId(rec, m.id);
    if (m.feedback !== undefined) {
      rec.serverVote = normVote(m.feedback);
      if (!rec.inflight) rec.vote = rec.serverVote; // our own unconfirmed vote wins until answered
    }
    setAnswerSource(rec, m.answer_source);
    setSources(rec, m.sources);
    if (cid) {
      rec.clientId = cid;
      rec.el.setAttribute('data-client-id', cid);
      byClient.set(cid, rec);
    }
    var state = m.state || 'complete';
    if (state === 'streaming' && !fresh && rec.final) {
      state = rec.state; // a stale snapshot never undoes a `done` we already have
    } else if (state === 'streaming' && !fresh && rec.text.length > String(m.text || '').length) {
      // our deltas are ahead of the stored snapshot: keep them
    } else if (fresh || rec.text !== m.text) {
      setText(rec, m.text);
    }
    setSeq(rec, m.seq);
    setState(rec, state);
    if (author === 'visitor') setVisitorStatus(rec, 'sent');
    setTime(rec, m.created_at);
    place(rec);
    advance();
    if (m.seq > knownSeq) knownSeq = m.seq;
    checkGap(m.seq);
    if ((author === 'bot' || author === 'agent') && (rec.text || rec.final)) hideTyping();
    if (!rec.final) return;
    if (own || initialSynced) announce(rec);
    else if (!initialSynced) rec.posted = true;
  }

  function streamRecord(f, author) {
    follow(f.conversation);
    if (typeof f.seq !== 'number') return null;
    var rec = bySeq.get(f.seq);
    if (!rec) {
      rec = newRecord(author || 'bot');
      setSeq(rec, f.seq);
      setState(rec, 'streaming');
      place(rec);
    }
    if (f.message_id != null && rec.id == null) setId(rec, f.message_id);
    if (f.seq > knownSeq) knownSeq = f.seq;
    return rec;
  }

  function onDelta(f) {
    var rec = streamRecord(f, 'bot');
    if (!rec) return;
    checkGap(f.seq);
    if (rec.final) return;
    hideTyping();
    var piece = typeof f.text === 'string' ? f.text : '';
    if (f.offset === rec.text.length) {
      appendText(rec, piece);
      scrollDown(false);
    } else {
      rec.el.setAttribute('data-desync', ''); // wait for `done`, which carries the whole text
    }
  }

  function onDone(f) {
    var rec = streamRecord(f, f.author || 'bot');
    if (!rec) return;
    setText(rec, f.text);
    rec.el.removeAttribute('data-desync');
    setAnswerSource(rec, f.answer_source);
    setSources(rec, f.sources);
    setState(rec, f.state === 'streaming' ? 'complete' : (f.state || 'complete'));
    hideTyping();
    advance();
    checkGap(f.seq);
    scrollDown(false);
    announce(rec);
  }

  function onTyping(f) {
    if (f.conversation != null && conv != null && f.conversation !== conv) return;
    if (f.active) showTyping(); else hideTyping();
  }

  function onStatus(f) {
    follow(f.conversation);
    if (f.status === convStatus) return;
    convStatus = f.status || null;
    if (convStatus !== 'bot') hideTyping();
    statusLine(convStatus);
    root.setAttribute('data-status', convStatus || '');
    if (withPerson()) handoffSettled(); else updateHandoff();
  }

  function onFeedback(f) {
    if (f.message_id == null) return;
    var key = String(f.message_id);
    var vote = normVote(f.vote);
    var rec = byId.get(key);
    if (!rec) { earlyVotes.set(key, vote); return; }
    rec.serverVote = vote;
    if (rec.inflight > 0) {
      // the answer to one of our votes (or another tab's vote): keep showing our latest click
      // until the server has answered all of them
      rec.inflight -= 1;
      var i = votesInFlight.indexOf(rec);
      if (i >= 0) votesInFlight.splice(i, 1);
      if (rec.inflight > 0) return;
    }
    rec.vote = vote;
    renderFeedback(rec);
  }

  function onError(f) {
    var code = f.code || '';
    if (code === 'bot_unavailable') { hideTyping(); notice(t('BotUnavailable')); return; }
    if (!f.id) {
      // Frames are answered in order; an error without a client id may be about our oldest
      // unanswered vote, or the handoff request. Roll back to what the server last said.
      var voted = votesInFlight.shift();
      if (voted) {
        voted.inflight = Math.max(0, voted.inflight - 1);
        if (!voted.inflight) { voted.vote = voted.serverVote; renderFeedback(voted); }
      }
      if (handoffPending) handoffSettled();
    }
    if (code === 'rate_limited') { notice(t('RateLimited')); scheduleRetry(); return; }
    if (f.id) {
      var id = String(f.id).toLowerCase();
      outboxTake(id);
      var rec = byClient.get(id);
      if (rec && rec.seq == null) {
        setVisitorStatus(rec, 'failed');
        setNote(rec, t('Failed') + ' · ' + t('Invalid'), 'failed');
        if (f.message) rec.noteEl.title = String(f.message);
        rec.el.setAttribute('data-error', code);
      }
      return;
    }
    if (code !== 'not_ready') notice(t('Error'));
  }

  // ---- sending ---------------------------------------------------------------------------------
  function renderVisitor(id, text) {
    var rec = newRecord('visitor');
    setText(rec, text);
    rec.clientId = id;
    rec.el.setAttribute('data-client-id', id);
    setVisitorStatus(rec, 'pending');
    byClient.set(id, rec);
    logEl.appendChild(rec.el);
    return rec;
  }
  function flushOutbox() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    readOutbox().forEach(function (x) {
      var id = x.id.toLowerCase();
      var rec = byClient.get(id);
      if (!rec) renderVisitor(id, x.text);
      else if (rec.status === 'sent') { outboxTake(id); return; }
      if (wsReady) sendFrame({ type: 'message', id: x.id, text: x.text });
    });
  }
  function scheduleRetry() {
    if (retryTimer) return;
    retryTimer = setTimeout(function () { retryTimer = 0; if (wsReady) flushOutbox(); }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 60000);
  }
  function submit() {
    var text = input.value.trim();
    if (!text) return;
    var id = uuid().toLowerCase();
    if (text.length > 2000 || utf8Length(JSON.stringify({ type: 'message', id: id, text: text })) > MAX_FRAME_BYTES) {
      notice(t('TooLong'));
      return;
    }
    outboxAdd({ id: id, text: text });
    renderVisitor(id, text);
    input.value = '';
    autosize();
    scrollDown(true);
    if (wsReady) sendFrame({ type: 'message', id: id, text: text });
  }

  // ---- feedback and handoff ----------------------------------------------------------------------
  var votesInFlight = []; // records, one entry per `feedback` frame sent and not yet answered
  var handoffPending = false; // a `handoff` was asked for; waiting for the `status` frame
  var handoffQueued = null; // its reason, until a socket is ready to carry it
  var handoffTimer = 0;

  // Optimistic: the buttons show the vote at once; `feedback` frames (or an error) settle it.
  function castVote(rec, vote) {
    if (!canVote(rec)) return;
    rec.vote = vote;
    rec.inflight += 1;
    votesInFlight.push(rec);
    renderFeedback(rec);
    if (wsReady) sendFrame({ type: 'feedback', message_id: rec.id, vote: vote });
    // otherwise resendVotes() sends it once the socket is ready
  }
  function resendVotes() {
    votesInFlight = [];
    byId.forEach(function (rec) {
      if (!rec.inflight) return;
      rec.inflight = 1;
      votesInFlight.push(rec);
      sendFrame({ type: 'feedback', message_id: rec.id, vote: rec.vote });
    });
  }
  function requestHandoff(reason) {
    if (handoffPending || withPerson()) return;
    handoffPending = true;
    handoffQueued = reason;
    if (wsReady && sendFrame({ type: 'handoff', reason: reason })) handoffQueued = null;
    clearTimeout(handoffTimer);
    handoffTimer = setTimeout(handoffSettled, 15000); // no answer: let the visitor try again
    updateHandoff();
  }
  function handoffSettled() {
    clearTimeout(handoffTimer);
    handoffPending = false;
    handoffQueued = null;
    updateHandoff();
  }
  function updateHandoff() {
    handoffBtn.hidden = withPerson();
    setBusy(handoffBtn, handoffPending);
    byId.forEach(function (rec) { if (rec.fbEl) renderOffer(rec); });
  }

  // ---- attributes from the host ----------------------------------------------------------------
  function queueAttributes(attrs) {
    if (!attrs || typeof attrs !== 'object' || Array.isArray(attrs)) return;
    var clean = pendingAttrs || {};
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && isFinite(v))) clean[k] = v;
      else console.warn('Helpdesk: attribute ' + JSON.stringify(k) + ' must be a string, number or boolean.');
    });
    var keys = Object.keys(clean);
    if (keys.length > 50) {
      console.warn('Helpdesk: at most 50 attributes; the rest are dropped.');
      var cut = {};
      keys.slice(0, 50).forEach(function (k) { cut[k] = clean[k]; });
      clean = cut;
    }
    pendingAttrs = keys.length ? clean : null;
    flushAttributes();
  }
  function flushAttributes() {
    if (!pendingAttrs || !wsReady) return;
    if (sendFrame({ type: 'attributes', attributes: pendingAttrs })) pendingAttrs = null;
  }

  // ---- reset (the host's Helpdesk('reset'), e.g. on logout) -----------------------------------
  function resetVisitor() {
    drop();
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    clearTimeout(retryTimer);
    retryTimer = 0;
    store.del('token');
    store.del('outbox');
    token = null;
    pendingAttrs = null;
    logEl.textContent = '';
    greetingEl = null;
    byClient.clear();
    byId.clear();
    earlyVotes.clear();
    votesInFlight = [];
    conv = null;
    bySeq = new Map();
    lastSeq = 0;
    resumeInFlight = false;
    stalledAfter = -1;
    convStatus = null;
    knownSeq = 0;
    root.setAttribute('data-status', '');
    handoffSettled();
    initialSynced = false;
    everReady = false;
    attempts = 0;
    hideTyping();
    hideNotice();
    unread = 0;
    postHost({ helpdesk: 'unread', count: 0 });
    input.value = '';
    autosize();
    showGreeting(cfg.greeting);
    postHost({ helpdesk: 'reset' });
    connect();
  }

  window.addEventListener('message', function (e) {
    if (!IN_FRAME || e.origin !== HOST_ORIGIN || e.source !== window.parent) return;
    var m = e.data;
    if (!m || typeof m.helpdesk !== 'string') return;
    switch (m.helpdesk) {
      case 'reset': resetVisitor(); break;
      case 'setAttributes': queueAttributes(m.attributes); break;
      case 'opened':
        isOpen = true;
        clearUnread();
        scrollDown(true);
        if (m.focus !== false) { try { input.focus({ preventScroll: true }); } catch (err) { input.focus(); } }
        break;
      case 'closed': isOpen = false; break;
      default: break;
    }
  });

  // ---- composer --------------------------------------------------------------------------------
  function autosize() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 160) + 'px';
  }
  form.addEventListener('submit', function (e) { e.preventDefault(); submit(); input.focus(); });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });
  input.addEventListener('input', autosize);
  closeBtn.addEventListener('click', function () { postHost({ helpdesk: 'close' }); });
  handoffBtn.addEventListener('click', function () { requestHandoff('button'); });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !e.defaultPrevented && !e.isComposing) postHost({ helpdesk: 'close' });
  });
  if (!IN_FRAME) closeBtn.hidden = true;

  // Another tab of the same host page forgot the visitor (Helpdesk('reset')): follow it.
  window.addEventListener('storage', function (e) {
    if (e.key === PREFIX + 'token' && e.newValue === null && token) resetVisitor();
  });

  // ---- start -----------------------------------------------------------------------------------
  if (/(?:^|[?&])reset=1(?:&|$)/.test(location.search)) {
    // the host asked for a reset before this frame existed (Helpdesk('reset') with no frame)
    store.del('token');
    store.del('outbox');
    token = null;
    postHost({ helpdesk: 'reset' });
  }
  if (!token) showGreeting(cfg.greeting);
  readOutbox().forEach(function (x) { renderVisitor(x.id.toLowerCase(), x.text); });
  scrollDown(true);
  connect();
})();
