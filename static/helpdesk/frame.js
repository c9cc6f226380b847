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
  var subtitleEl = $('helpdesk-subtitle');
  var queueEl = $('helpdesk-queue');
  var ratingEl = $('helpdesk-rating');
  var typingText = typingEl.querySelector('.hd-typing-text') || typingEl.appendChild(make('span', 'hd-typing-text hd-sr'));

  var HOST_ORIGIN = cfg.hostOrigin || '';
  var IN_FRAME = window.parent !== window;
  var MAX_FRAME_BYTES = cfg.maxFrameBytes || 4096;
  var PING_MS = 25000;
  var DEAD_MS = 60000; // nothing received for this long after a ping: the socket is dead
  var TYPING_TIMEOUT_MS = 60000;
  var AGENT_TYPING_TIMEOUT_MS = 30000; // an agent's desk repeats `typing` while the agent types
  var TYPING_EVERY_MS = 2000; // the customer's `typing` {active: true}: at most this often
  var TYPING_IDLE_MS = 3000; // ...and {active: false} after this long without a keystroke
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
    Handoff: 'Talk to a person', Sources: 'Sources:',
    QueueComing: 'A person will be with you shortly.', QueuePosition: 'You are number {position} in the queue',
    QueueWait: 'Expected wait: {time}', WaitSoon: 'less than a minute', WaitOne: 'about 1 minute',
    WaitMany: 'about {minutes} minutes', Nobody: 'Sorry, nobody is available right now.',
    Closed: 'Sorry, nobody is available right now: we are outside business hours.',
    EmailIntro: 'Leave your email address and we will get back to you.', Email: 'Email',
    LeaveEmail: 'Leave email', EmailInvalid: 'Please enter a valid email address.',
    EmailSaved: "We'll reply to {email}", AgentJoined: '{name} joined the chat',
    AgentLeft: '{name} left the chat', AgentTyping: '{name} is typing…', RatePrompt: 'How did we do?',
    Rating: 'Rating', Star1: '1 star', Star2: '2 stars', Star3: '3 stars', Star4: '4 stars', Star5: '5 stars',
    ChooseStars: 'Choose from 1 to 5 stars.', Comment: 'Comment', Optional: 'Optional',
    SubmitRating: 'Submit rating', RatingThanks: 'Thanks for your feedback!',
    AlreadyRated: 'You have already rated this conversation.'
  };
  function t(key) {
    var attr = 'i18n' + key; // dataset name of data-i18n-<kebab-key>
    return root.dataset[attr] || FALLBACK[key] || key;
  }
  // t() with {placeholders} filled in (as text: the result only ever goes to textContent)
  function fmt(key, vars) {
    return t(key).replace(/\{(\w+)\}/g, function (all, name) {
      return Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : all;
    });
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
    rec.labelEl = bubble.appendChild(make('span', 'hd-sr', t(LABELS[author] || 'Notice') + ': '));
    rec.textEl = bubble.appendChild(make('span', 'hd-text'));
    if (author === 'agent') {
      // the agent's name above the bubble (screen readers get it from the label in the bubble)
      rec.authorEl = el.appendChild(make('div', 'hd-author', t('Agent')));
      rec.authorEl.setAttribute('aria-hidden', 'true');
      rec.agentName = null;
      if (agentName) setAgentName(rec, agentName);
    }
    el.appendChild(bubble);
    rec.el = el;
    rec.bubble = bubble;
    recOf.set(el, rec);
    return rec;
  }
  // An agent's message carries its writer's name (author_name); older servers' messages
  // get the name of the agent who joined.
  function setAgentName(rec, name) {
    if (!rec.authorEl || !name) return;
    rec.agentName = name;
    rec.authorEl.textContent = name;
    rec.labelEl.textContent = name + ': ';
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
  // author: 'bot' (dots; "Typing…" for screen readers) or 'agent' ("<name> is typing…", shown)
  function showTyping(author) {
    var agent = author === 'agent';
    typingEl.setAttribute('data-author', agent ? 'agent' : 'bot');
    typingText.textContent = agent ? fmt('AgentTyping', { name: agentName || t('Agent') }) : t('Typing');
    typingText.classList.toggle('hd-sr', !agent);
    typingEl.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, agent ? AGENT_TYPING_TIMEOUT_MS : TYPING_TIMEOUT_MS);
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

  // ---- the socket (static/helpdesk/reconnecting-socket.js) ----------------------------------
  var wsReady = false;
  var everReady = false;
  var resumeInFlight = false;
  var resumeAfter = -1; // the `after` of the resume in flight
  var stalledAfter = -1; // a resume from here brought nothing new; do not repeat it
  var seqAtResume = 0;
  var pendingAttrs = null;
  var retryTimer = 0;
  var retryDelay = 5000;
  var token = store.get('token');

  var socket = window.HelpdeskSocket({
    url: function () {
      var path = cfg.wsPath || ('/ws/widget/' + encodeURIComponent(cfg.siteKey || '') + '/');
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
    },
    pingMs: PING_MS,
    deadMs: DEAD_MS,
    // The backoff starts again on `ready`, not on open: a server that accepts and then fails
    // the hello must not be hammered.
    resetOnOpen: false,
    onConnecting: function () {
      root.setAttribute('data-connection', 'connecting');
      setStatus(everReady ? t('Reconnecting') : t('Connecting'), everReady ? 0 : 800);
    },
    onOpen: function () {
      var hello = { type: 'hello', token: token || null, after: lastSeq, language: navigator.language || cfg.language || '' };
      var ref = document.referrer;
      if (ref && /^https?:/i.test(ref) && ref.length <= 2000) hello.page_url = ref;
      sendFrame(hello);
    },
    onFrame: function (f) { handle(f); },
    onLost: function () {
      wsReady = false;
      asks = [];
      typingStopped(false);
      resumeInFlight = false;
      hideTyping();
      root.setAttribute('data-connection', 'down');
      setStatus(everReady ? t('Reconnecting') : t('Connecting'), everReady ? 0 : 800);
    },
  });
  function sendFrame(obj) { return socket.send(obj); }

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
    resetHandoffState();
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
      case 'queue': return onQueue(f);
      case 'agent': return onAgent(f);
      case 'contact': return onContact(f);
      case 'rating': return onRating(f);
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
    socket.resetBackoff();
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
      if (convStatus !== 'waiting') queueInfo = null; // it changed while we were away
      if (convStatus !== 'human') agentName = null;
      renderSubtitle();
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
    asks = [];
    flushOutbox();
    flushAttributes();
    resendVotes();
    if (handoffQueued && sendAsk('handoff', { type: 'handoff', reason: handoffQueued })) handoffQueued = null;
    resendHandoffFrames();
    updateHandoff();
    renderPanels();
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
    if (!f.duplicate && (convStatus == null || convStatus === 'bot')) showTyping('bot');
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
    // the name the agent had when they wrote it, even after a transfer
    if (author === 'agent' && typeof m.author_name === 'string' && m.author_name.trim()) {
      setAgentName(rec, m.author_name.trim());
    }
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
    if (author === 'system' && fresh && initialSynced) systemMessage(rec.text);
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
    var author = f.author === 'agent' ? 'agent' : 'bot';
    if (f.active) showTyping(author);
    else if (typingEl.hidden || typingEl.getAttribute('data-author') === author) hideTyping();
  }

  function onStatus(f) {
    follow(f.conversation);
    if (f.status === convStatus) return;
    convStatus = f.status || null;
    if (convStatus !== 'bot') hideTyping();
    statusLine(convStatus);
    root.setAttribute('data-status', convStatus || '');
    if (withPerson()) { answered('handoff'); handoffSettled(); } else updateHandoff();
    if (convStatus !== 'waiting') queueInfo = null;
    if (convStatus !== 'human') { agentName = null; typingStopped(false); }
    renderSubtitle();
    renderPanels();
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
      answered('vote');
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
      // An error without a client id is about the request its `about` names (see `asks`).
      // Roll it back to what the server last said.
      if (code === 'already_rated') { answered('rating'); alreadyRated(); return; }
      var kind = askOfError(f);
      if (kind === 'contact') { contactFailed(code); return; }
      if (kind === 'rating') { ratingFailed(code); return; }
      if (kind !== null) {
        var voted = kind === 'handoff' ? null : votesInFlight.shift();
        if (voted) {
          voted.inflight = Math.max(0, voted.inflight - 1);
          if (!voted.inflight) { voted.vote = voted.serverVote; renderFeedback(voted); }
        }
        if (kind !== 'vote' && handoffPending) handoffSettled();
      }
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
    typingStopped(true);
    if (convStatus === 'resolved' && !ratingDismissed) {
      // writing again starts a new conversation: the rating prompt goes
      ratingDismissed = true;
      renderRating();
    }
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
    if (wsReady) sendAsk('vote', { type: 'feedback', message_id: rec.id, vote: vote });
    // otherwise resendVotes() sends it once the socket is ready
  }
  function resendVotes() {
    votesInFlight = [];
    byId.forEach(function (rec) {
      if (!rec.inflight) return;
      rec.inflight = 1;
      votesInFlight.push(rec);
      sendAsk('vote', { type: 'feedback', message_id: rec.id, vote: rec.vote });
    });
  }
  function requestHandoff(reason) {
    if (handoffPending || withPerson()) return;
    handoffPending = true;
    handoffQueued = reason;
    if (wsReady && sendAsk('handoff', { type: 'handoff', reason: reason })) handoffQueued = null;
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

  // ---- requests the server answers -------------------------------------------------------------
  // The server answers frames in order, and an `error` about anything but a `message` carries no
  // client id, only the frame type it answers (`about`). `asks` lists the kinds of the frames sent on this socket and not yet answered, oldest
  // first ('vote', 'handoff', 'contact', 'rating'), so such an error goes to the right one.
  var asks = [];
  function sendAsk(kind, frame) {
    if (!sendFrame(frame)) return false;
    asks.push(kind);
    return true;
  }
  function answered(kind) {
    var i = asks.indexOf(kind);
    if (i >= 0) asks.splice(i, 1);
  }
  // An error names the frame it answers (`about`); servers before that field go by order.
  var ASK_OF_FRAME = { feedback: 'vote', handoff: 'handoff', contact: 'contact', rating: 'rating' };
  function askOfError(f) {
    if (f.about === undefined) return asks.shift();
    var named = ASK_OF_FRAME[f.about];
    if (!named || asks.indexOf(named) < 0) return null;
    answered(named);
    return named;
  }
  function focusInput() {
    try { input.focus({ preventScroll: true }); } catch (e) { input.focus(); }
  }
  // Set a line's text (only when it changed: some sit in live regions) and hide it when empty.
  function setLine(el, text) {
    if (el.textContent !== text) el.textContent = text;
    el.hidden = !text;
  }
  // `after`: put the line right after this node of the log (null: first); default: last
  function addLine(kind, text, after) {
    var line = make('div', 'hd-line', text);
    line.setAttribute('data-notice', kind);
    if (after === undefined) logEl.appendChild(line);
    else if (after === null) logEl.insertBefore(line, logEl.firstChild);
    else logEl.insertBefore(line, after.parentNode === logEl ? after.nextSibling : null);
    scrollDown(false);
    return line;
  }

  // ---- the human handoff: queue, agent, contact e-mail, rating ---------------------------------
  // All of it is about the current conversation and starts over when the conversation changes.
  var queueInfo = null; // the last `queue` frame, cleaned: {position, wait, online, open}
  var agentName = null; // the agent who joined
  var contactSaved = null; // the e-mail address the server stored
  var contactSending = null; // an address sent (or waiting for a socket), not yet answered
  var contactError = null; // 'invalid' or another error code
  var ratingScore = 0; // the stars picked
  var ratingSending = null; // {conv, score, frame, sent, resent}: a rating not yet answered
  var ratingError = null; // 'stars' (none picked), 'long', or an error code
  var ratingDismissed = false; // the customer wrote again instead of rating
  var typingSent = 0; // when our last `typing` {active: true} went out; 0 when idle
  var typingIdle = 0;
  var qEls = null; // the queue panel's elements, built on first use
  var rEls = null; // the rating panel's elements

  function resetHandoffState() {
    queueInfo = null;
    agentName = null;
    contactSaved = contactSending = contactError = null;
    ratingScore = 0;
    ratingSending = ratingError = null;
    ratingDismissed = false;
    if (rEls) rEls.comment.value = '';
    dropPendingLines();
    typingStopped(false);
    renderSubtitle();
    renderPanels();
  }
  function renderPanels() {
    renderQueue();
    renderRating();
    scrollDown(false);
  }
  function renderSubtitle() {
    setLine(subtitleEl, agentName || '');
  }
  // frames about the visitor's live conversation (queue, agent): adopt it when none is known yet
  function isCurrent(f) {
    if (f.conversation == null) return true;
    if (conv == null) follow(f.conversation);
    return f.conversation === conv;
  }

  // Waiting for a person: who is coming, when, and the e-mail form when nobody can come.
  function buildQueue() {
    qEls = {};
    var info = queueEl.appendChild(make('div', 'hd-queue-info'));
    info.setAttribute('role', 'status');
    qEls.title = info.appendChild(make('p', 'hd-queue-title'));
    qEls.title.id = 'helpdesk-queue-title';
    queueEl.setAttribute('aria-labelledby', qEls.title.id);
    qEls.position = info.appendChild(make('p', 'hd-queue-position'));
    qEls.wait = info.appendChild(make('p', 'hd-queue-wait'));
    qEls.saved = info.appendChild(make('p', 'hd-contact-saved'));
    var form = qEls.form = queueEl.appendChild(make('form', 'hd-contact'));
    form.noValidate = true;
    form.appendChild(make('p', 'hd-contact-intro', t('EmailIntro')));
    var label = form.appendChild(make('label', 'hd-label', t('Email')));
    label.htmlFor = 'helpdesk-email';
    var row = form.appendChild(make('div', 'hd-row'));
    var box = qEls.email = row.appendChild(make('input', 'hd-field'));
    box.id = 'helpdesk-email';
    box.type = 'email';
    box.name = 'email';
    box.setAttribute('autocomplete', 'email');
    box.maxLength = 254;
    box.required = true;
    box.spellcheck = false;
    var send = qEls.send = row.appendChild(make('button', 'hd-action', t('LeaveEmail')));
    send.type = 'submit';
    send.id = 'helpdesk-email-send';
    qEls.error = form.appendChild(make('p', 'hd-field-error'));
    qEls.error.id = 'helpdesk-email-error';
    qEls.error.hidden = true;
    form.addEventListener('submit', function (e) { e.preventDefault(); leaveEmail(); });
    box.addEventListener('input', function () {
      if (contactError) { contactError = null; renderQueue(); }
    });
  }
  function waitText(seconds) {
    if (seconds < 45) return t('WaitSoon');
    var minutes = Math.max(1, Math.round(seconds / 60));
    return minutes === 1 ? t('WaitOne') : fmt('WaitMany', { minutes: minutes });
  }
  function renderQueue() {
    var show = convStatus === 'waiting';
    if (!show) {
      if (!queueEl.hidden && queueEl.contains(document.activeElement)) focusInput();
      queueEl.hidden = true;
      return;
    }
    if (!qEls) buildQueue();
    queueEl.hidden = false;
    var q = queueInfo;
    var why = !q ? 'coming' : !q.open ? 'closed' : !q.online ? 'nobody' : 'coming';
    queueEl.setAttribute('data-availability', why);
    setLine(qEls.title, t(why === 'closed' ? 'Closed' : why === 'nobody' ? 'Nobody' : 'QueueComing'));
    var coming = why === 'coming';
    setLine(qEls.position, coming && q && q.position ? fmt('QueuePosition', { position: q.position }) : '');
    setLine(qEls.wait, coming && q && q.wait != null ? fmt('QueueWait', { time: waitText(q.wait) }) : '');
    setLine(qEls.saved, contactSaved ? fmt('EmailSaved', { email: contactSaved }) : '');
    var formShown = !coming && !contactSaved;
    if (!formShown && !qEls.form.hidden && qEls.form.contains(document.activeElement)) focusInput();
    qEls.form.hidden = !formShown;
    setBusy(qEls.send, !!contactSending);
    var err = contactError === 'invalid' ? t('EmailInvalid') : contactError ? t('Error') : '';
    setLine(qEls.error, err);
    if (err) {
      qEls.email.setAttribute('aria-invalid', 'true');
      qEls.email.setAttribute('aria-describedby', qEls.error.id);
    } else {
      qEls.email.removeAttribute('aria-invalid');
      qEls.email.removeAttribute('aria-describedby');
    }
  }
  function onQueue(f) {
    if (!isCurrent(f)) return;
    var pos = f.position, wait = f.expected_wait_seconds;
    queueInfo = {
      position: typeof pos === 'number' && pos >= 1 ? Math.floor(pos) : null,
      wait: typeof wait === 'number' && wait >= 0 && isFinite(wait) ? wait : null,
      online: f.agents_online !== false,
      open: f.open_now !== false
    };
    renderQueue();
  }
  var EMAIL_RE = /^[^\s@]+@[^\s@.]+(?:\.[^\s@.]+)+$/;
  function leaveEmail() {
    if (contactSending) return;
    var email = qEls.email.value.trim();
    if (email.length > 254 || !EMAIL_RE.test(email)) {
      contactError = 'invalid';
      renderQueue();
      qEls.email.focus();
      return;
    }
    contactError = null;
    contactSending = email;
    if (wsReady) sendAsk('contact', { type: 'contact', email: email }); // else sent on `ready`
    renderQueue();
  }
  function onContact(f) {
    // Between `ready` and `synced` it restates an address left before: no answer to ours.
    if (!replaying) answered('contact');
    if (f.conversation != null && conv != null && f.conversation !== conv) return;
    contactSaved = typeof f.email === 'string' && f.email ? f.email : contactSending;
    contactSending = contactError = null;
    renderQueue();
  }
  function contactFailed(code) {
    contactSending = null;
    contactError = code === 'invalid_field' || code === 'missing_field' ? 'invalid' : code || 'error';
    renderQueue();
  }

  // "<name> joined the chat" / "<name> left the chat". The server may store a system message
  // saying the same ("Alice joined the conversation."): a line waits LINE_DELAY_MS and is
  // dropped when a system message naming the agent comes just before or after it.
  var LINE_DELAY_MS = 1500;
  var pendingLines = []; // [{name, timer}]
  var lastSystem = { text: '', at: 0 }; // the newest system message, live
  function agentLine(kind, key, name) {
    if (Date.now() - lastSystem.at < LINE_DELAY_MS && lastSystem.text.indexOf(name) >= 0) return;
    var entry = { name: name, anchor: logEl.lastElementChild }; // where it goes, not below newer messages
    entry.timer = setTimeout(function () {
      var i = pendingLines.indexOf(entry);
      if (i >= 0) pendingLines.splice(i, 1);
      addLine(kind, fmt(key, { name: name }), entry.anchor);
    }, LINE_DELAY_MS);
    pendingLines.push(entry);
  }
  function systemMessage(text) {
    lastSystem = { text: text, at: Date.now() };
    pendingLines = pendingLines.filter(function (e) {
      if (text.indexOf(e.name) < 0) return true;
      clearTimeout(e.timer);
      return false;
    });
  }
  function dropPendingLines() {
    pendingLines.forEach(function (e) { clearTimeout(e.timer); });
    pendingLines = [];
  }

  // A person joined (or left). Between `ready` and `synced` the server restates who has the
  // conversation (a reload forgot it): that is state, already told by the history's messages.
  function onAgent(f) {
    if (!isCurrent(f)) return;
    var name = typeof f.name === 'string' ? f.name.trim() : '';
    if (f.joined) {
      name = name || t('Agent');
      if (name !== agentName) { // a reconnect may repeat it: one line per agent
        agentName = name;
        if (!replaying) agentLine('agent-joined', 'AgentJoined', name);
      }
      bySeq.forEach(function (rec) { if (rec.author === 'agent' && !rec.agentName) setAgentName(rec, name); });
    } else if (name || agentName) {
      agentLine('agent-left', 'AgentLeft', name || agentName);
      if (!name || name === agentName) {
        agentName = null;
        if (typingEl.getAttribute('data-author') === 'agent') hideTyping();
      }
    }
    renderSubtitle();
  }

  // The customer's typing, shown to the agent: only while a person is in the conversation.
  function customerTyping() {
    if (convStatus !== 'human' || !wsReady) return;
    if (!input.value.trim()) { typingStopped(true); return; }
    var now = Date.now();
    if ((!typingSent || now - typingSent >= TYPING_EVERY_MS) && sendFrame({ type: 'typing', active: true })) {
      typingSent = now;
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(function () { typingStopped(true); }, TYPING_IDLE_MS);
  }
  function typingStopped(tell) {
    clearTimeout(typingIdle);
    typingIdle = 0;
    if (!typingSent) return;
    typingSent = 0;
    if (tell && convStatus === 'human' && wsReady) sendFrame({ type: 'typing', active: false });
  }

  // The rating asked for once the conversation is resolved; once per conversation, remembered
  // in storage as {conversation id: score} (0: rated somewhere else).
  function ratedMap() {
    var m;
    try { m = JSON.parse(store.get('rated') || '{}'); } catch (e) { m = null; }
    return m && typeof m === 'object' && !Array.isArray(m) ? m : {};
  }
  function isRated(id) {
    return id != null && Object.prototype.hasOwnProperty.call(ratedMap(), String(id));
  }
  function markRated(id, score) {
    var m = ratedMap();
    m[String(id)] = score;
    var keys = Object.keys(m); // integer keys come out in ascending order: the oldest first
    keys.slice(0, Math.max(0, keys.length - 50)).forEach(function (k) { delete m[k]; });
    store.set('rated', JSON.stringify(m));
  }
  function buildRating() {
    rEls = {};
    var form = rEls.form = ratingEl.appendChild(make('form', 'hd-rate'));
    form.noValidate = true;
    var title = form.appendChild(make('p', 'hd-rate-title', t('RatePrompt')));
    title.id = 'helpdesk-rating-title';
    ratingEl.setAttribute('aria-labelledby', title.id);
    var stars = rEls.stars = form.appendChild(make('div', 'hd-stars'));
    stars.setAttribute('role', 'group');
    stars.setAttribute('aria-label', t('Rating'));
    [1, 2, 3, 4, 5].forEach(function (n) {
      var b = stars.appendChild(make('button', 'hd-star'));
      b.type = 'button';
      b.setAttribute('data-score', String(n));
      b.setAttribute('aria-label', t('Star' + n));
      b.title = t('Star' + n);
      b.appendChild(make('span', null, '★')).setAttribute('aria-hidden', 'true');
      b.addEventListener('click', function () {
        if (ratingSending) return;
        ratingScore = n;
        if (ratingError === 'stars') ratingError = null;
        renderRating();
      });
    });
    var label = form.appendChild(make('label', 'hd-label', t('Comment')));
    label.htmlFor = 'helpdesk-rating-comment';
    var box = rEls.comment = form.appendChild(make('textarea', 'hd-field hd-comment'));
    box.id = 'helpdesk-rating-comment';
    box.name = 'comment';
    box.rows = 2;
    box.maxLength = 2000;
    box.placeholder = t('Optional');
    var row = form.appendChild(make('div', 'hd-row'));
    rEls.error = row.appendChild(make('p', 'hd-field-error'));
    rEls.error.id = 'helpdesk-rating-error';
    rEls.error.hidden = true;
    var submitBtn = rEls.submit = row.appendChild(make('button', 'hd-action', t('SubmitRating')));
    submitBtn.type = 'submit';
    submitBtn.id = 'helpdesk-rating-submit';
    form.addEventListener('submit', function (e) { e.preventDefault(); sendRating(); });
  }
  function renderRating() {
    var show = conv != null && convStatus === 'resolved' && !ratingDismissed && !isRated(conv);
    if (!show) {
      if (!ratingEl.hidden && ratingEl.contains(document.activeElement)) focusInput();
      ratingEl.hidden = true;
      return;
    }
    if (!rEls) buildRating();
    ratingEl.hidden = false;
    var busy = !!ratingSending;
    rEls.form.setAttribute('aria-busy', busy ? 'true' : 'false');
    Array.prototype.forEach.call(rEls.stars.children, function (b) {
      var n = Number(b.getAttribute('data-score'));
      b.setAttribute('aria-pressed', n === ratingScore ? 'true' : 'false');
      if (n <= ratingScore) b.setAttribute('data-on', ''); else b.removeAttribute('data-on');
      setBusy(b, busy);
    });
    setBusy(rEls.submit, busy);
    var err = ratingError === 'stars' ? 'ChooseStars' : ratingError === 'long' ? 'TooLong' : ratingError ? 'Error' : '';
    setLine(rEls.error, err ? t(err) : '');
  }
  function sendRating() {
    if (ratingSending) return;
    if (!ratingScore) {
      ratingError = 'stars';
      renderRating();
      rEls.stars.firstChild.focus();
      return;
    }
    var frame = { type: 'rating', score: ratingScore };
    var comment = rEls.comment.value.trim();
    if (comment) frame.comment = comment;
    if (comment.length > 2000 || utf8Length(JSON.stringify(frame)) > MAX_FRAME_BYTES) {
      ratingError = 'long';
      renderRating();
      rEls.comment.focus();
      return;
    }
    ratingError = null;
    ratingSending = { conv: conv, score: ratingScore, frame: frame, sent: false, resent: false };
    if (wsReady) ratingSending.sent = sendAsk('rating', frame); // else sent on `ready`
    renderRating();
  }
  function rated(id, score, key) {
    var mine = ratingSending;
    var asked = id === conv && (!ratingEl.hidden || (mine && mine.conv === id));
    if (mine && mine.conv === id) ratingSending = null;
    if (id == null) return;
    markRated(id, score);
    if (asked) addLine(key === 'AlreadyRated' ? 'already-rated' : 'rated', t(key));
    renderRating();
  }
  function onRating(f) {
    answered('rating');
    var id = f.conversation != null ? f.conversation : ratingSending ? ratingSending.conv : null;
    var score = typeof f.score === 'number' ? f.score : ratingSending ? ratingSending.score : 0;
    rated(id, score, 'RatingThanks');
  }
  function alreadyRated() {
    var mine = ratingSending;
    if (!mine) return; // not about anything on screen
    // our own rating, sent again after a reconnect, that the server had stored already
    rated(mine.conv, mine.resent ? mine.score : 0, mine.resent ? 'RatingThanks' : 'AlreadyRated');
  }
  function ratingFailed(code) {
    ratingSending = null;
    ratingError = code || 'error';
    renderRating();
  }
  // after `ready`: send again what the last socket took but never answered
  function resendHandoffFrames() {
    if (contactSending) sendAsk('contact', { type: 'contact', email: contactSending });
    if (ratingSending) {
      if (ratingSending.sent) ratingSending.resent = true;
      if (sendAsk('rating', ratingSending.frame)) ratingSending.sent = true;
    }
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
    socket.stop();
    wsReady = false;
    clearTimeout(retryTimer);
    retryTimer = 0;
    store.del('token');
    store.del('outbox');
    store.del('rated');
    token = null;
    pendingAttrs = null;
    asks = [];
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
    resetHandoffState();
    initialSynced = false;
    everReady = false;
    socket.resetBackoff();
    hideTyping();
    hideNotice();
    unread = 0;
    postHost({ helpdesk: 'unread', count: 0 });
    input.value = '';
    autosize();
    showGreeting(cfg.greeting);
    postHost({ helpdesk: 'reset' });
    socket.connect();
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
  input.addEventListener('input', function () { autosize(); customerTyping(); });
  closeBtn.addEventListener('click', function () { postHost({ helpdesk: 'close' }); });
  handoffBtn.addEventListener('click', function () { requestHandoff('button'); });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && !e.defaultPrevented && !e.isComposing) postHost({ helpdesk: 'close' });
  });
  if (!IN_FRAME) closeBtn.hidden = true;

  // Another tab of the same host page forgot the visitor (Helpdesk('reset')): follow it.
  window.addEventListener('storage', function (e) {
    if (e.key === PREFIX + 'token' && e.newValue === null && token) resetVisitor();
    else if (e.key === PREFIX + 'rated') renderRating(); // rated in another tab: stop asking here
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
  // The buttons come disabled in the page: a click before this script had run would be lost,
  // and a submit would reload the frame with the typed text in its address.
  [handoffBtn, closeBtn, $('helpdesk-send')].forEach(function (b) { b.disabled = false; });
  readOutbox().forEach(function (x) { renderVisitor(x.id.toLowerCase(), x.text); });
  scrollDown(true);
  socket.connect();
})();
