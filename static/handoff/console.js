/* Helpdesk agent console: the client side of docs/agent-protocol.md for one conversation.
 *
 * Plain ES2017, no dependencies, no build step. The page arrives rendered by the server
 * (templates/admin/handoff/console.html); this script follows the conversation over
 * /ws/agent/ and keeps the page live. Every piece of user text goes through textContent.
 */
(function () {
  'use strict';

  var $ = function (id) { return document.getElementById(id); };
  var root = $('hd-console');
  var cfgEl = $('hd-console-config');
  if (!root || !cfgEl) return;
  var cfg;
  try { cfg = JSON.parse(cfgEl.textContent) || {}; } catch (e) { console.error('Helpdesk: bad config', e); return; }

  var L = cfg.labels || {};
  var CONV = cfg.conversation;
  var ME = cfg.user;
  var MAX_REPLY = cfg.maxReplyChars || 4000;
  var PING_MS = 25000;
  var DEAD_MS = 60000;
  var TYPING_IDLE_MS = 3000; // our typing stops this long after the last keystroke
  var TYPING_REFRESH_MS = 15000; // while typing on, `active: true` is repeated this often
  var VISITOR_TYPING_MS = 30000; // the customer's indicator hides if no frame says otherwise

  var log = $('hd-transcript');
  var typingEl = $('hd-typing');
  var alertEl = $('hd-alert');
  var connEl = $('hd-connection');
  var statusEl = $('hd-status');
  var replyForm = $('hd-reply-form');
  var reply = $('hd-reply');
  var sendBtn = $('hd-send');
  var canned = $('hd-canned');
  var claimBtn = $('hd-claim');
  var resolveBtn = $('hd-resolve');
  var returnBtn = $('hd-return');
  var transferTo = $('hd-transfer-to');
  var transferBtn = $('hd-transfer');
  var noteForm = $('hd-note-form');
  var noteInput = $('hd-note');
  var noteAddBtn = $('hd-add-note');
  var notesEl = $('hd-notes');
  var handoffEl = $('hd-handoff');

  var status = cfg.status || root.getAttribute('data-status') || '';
  var handoff = cfg.handoff || null; // {id, status, agent: {id, name} | null, ...}

  // ---- small helpers ---------------------------------------------------------------------------
  function make(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
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
  function hhmm(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) d = new Date();
    return ('0' + d.getHours()).slice(-2) + ':' + ('0' + d.getMinutes()).slice(-2);
  }
  function sameConv(f) { return f && String(f.conversation) === String(CONV); }
  function nameOf(x) {
    if (x == null) return '';
    if (typeof x === 'string') return x;
    return x.name || '';
  }

  var alertTimer = 0;
  function showError(text) {
    alertEl.textContent = text;
    alertEl.hidden = false;
    clearTimeout(alertTimer);
    alertTimer = setTimeout(function () { alertEl.hidden = true; alertEl.textContent = ''; }, 15000);
  }
  function clearError() {
    clearTimeout(alertTimer);
    alertEl.hidden = true;
    alertEl.textContent = '';
  }

  // ---- the transcript --------------------------------------------------------------------------
  var bySeq = new Map(); // seq -> element
  var pending = new Map(); // client id -> {el, text}; replies sent but not acked
  var maxSeq = 0;

  var stick = true;
  log.addEventListener('scroll', function () {
    stick = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  }, { passive: true });
  function scrollDown(force) {
    if (force) stick = true;
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function authorLabel(author) { return L[author === 'visitor' ? 'customer' : author] || author; }

  function buildMessage(author) {
    var el = make('div', 'hd-msg');
    el.setAttribute('data-author', author);
    var meta = el.appendChild(make('div', 'hd-msg-meta'));
    meta.appendChild(make('span', 'hd-msg-author', authorLabel(author)));
    meta.appendChild(document.createTextNode(' '));
    meta.appendChild(make('time', 'hd-msg-time'));
    el.appendChild(make('div', 'hd-msg-text'));
    return el;
  }
  function part(el, cls) { return el.querySelector('.' + cls); }
  function setNote(el, text) {
    var note = part(el, 'hd-msg-note');
    if (!text) { if (note) note.remove(); return; }
    if (!note) note = el.appendChild(make('div', 'hd-msg-note'));
    note.textContent = text;
  }
  function setFeedback(el, vote) {
    if (vote) el.setAttribute('data-feedback', vote); else el.removeAttribute('data-feedback');
    setNote(el, vote === 'down' ? L.notHelpful : vote === 'up' ? L.helpful : '');
  }
  function setTime(el, iso) {
    var t = part(el, 'hd-msg-time');
    if (!t) return;
    if (iso) t.setAttribute('datetime', iso);
    t.textContent = hhmm(iso);
  }
  function seqOf(el) { return el && el.hasAttribute('data-seq') ? Number(el.getAttribute('data-seq')) : null; }
  function placeBySeq(el, seq) {
    // Keep the log in seq order; replies still waiting for their seq stay at the end.
    if (el.parentNode === log) {
      var prev = seqOf(el.previousElementSibling), next = el.nextElementSibling;
      if ((prev === null ? !el.previousElementSibling : prev < seq) &&
          (!next || seqOf(next) === null || seqOf(next) > seq)) return;
    }
    var before = null;
    for (var c = log.firstElementChild; c; c = c.nextElementSibling) {
      var s = Number(c.getAttribute('data-seq'));
      if (c !== el && (!c.hasAttribute('data-seq') || s > seq)) { before = c; break; }
    }
    if (el.parentNode !== log || el.nextElementSibling !== before) log.insertBefore(el, before);
  }
  function assignSeq(el, seq, messageId) {
    el.setAttribute('data-seq', String(seq));
    if (messageId != null) el.setAttribute('data-message-id', String(messageId));
    bySeq.set(seq, el);
    placeBySeq(el, seq);
    if (seq > maxSeq + 1) resync();
    if (seq > maxSeq) maxSeq = seq;
  }

  // A stored message (the widget's `message.message`): render or update it, keyed by seq.
  function renderMessage(m) {
    if (!m || typeof m.seq !== 'number') return;
    var el = bySeq.get(m.seq);
    if (!el && m.client_id && pending.has(String(m.client_id).toLowerCase())) {
      // Our own reply, announced to the room before (or instead of) its ack.
      var key = String(m.client_id).toLowerCase();
      el = pending.get(key).el;
      pending.delete(key);
      setNote(el, '');
    }
    var fresh = !el;
    if (fresh) {
      el = buildMessage(m.author || 'system');
      log.appendChild(el);
    }
    el.setAttribute('data-author', m.author || 'system');
    part(el, 'hd-msg-author').textContent = authorLabel(m.author || 'system');
    part(el, 'hd-msg-text').textContent = m.text == null ? '' : String(m.text);
    el.setAttribute('data-state', m.state || 'complete');
    if (fresh || m.created_at) setTime(el, m.created_at);
    if (m.author === 'bot') setFeedback(el, m.feedback || null);
    assignSeq(el, m.seq, m.id);
    scrollDown(false);
  }

  // A streaming bot answer (frames relayed from the customer's room).
  function onDelta(f) {
    if (typeof f.seq !== 'number') return;
    var el = bySeq.get(f.seq);
    if (!el) {
      el = buildMessage('bot');
      el.setAttribute('data-state', 'streaming');
      setTime(el, null);
      log.appendChild(el);
      assignSeq(el, f.seq, f.message_id);
    }
    var textEl = part(el, 'hd-msg-text');
    var have = textEl.textContent;
    var offset = typeof f.offset === 'number' ? f.offset : have.length;
    if (offset > have.length) return; // a piece went missing; `done` brings the whole text
    textEl.textContent = have.slice(0, offset) + String(f.text || '');
    scrollDown(false);
  }
  function onDone(f) {
    if (typeof f.seq !== 'number') return;
    renderMessage({
      id: f.message_id, seq: f.seq, author: f.author || 'bot', text: f.text,
      state: f.state || 'complete', created_at: null, feedback: null
    });
  }

  // Replies we sent: shown at once, marked pending until the server acks them.
  function addPending(id, text) {
    var el = buildMessage('agent');
    el.setAttribute('data-state', 'pending');
    el.setAttribute('data-client-id', id);
    part(el, 'hd-msg-text').textContent = text;
    setTime(el, null);
    setNote(el, L.sending);
    log.appendChild(el);
    pending.set(id, { el: el, text: text });
    scrollDown(true);
  }
  function onAck(f) {
    var key = String(f.id || '').toLowerCase();
    var entry = pending.get(key);
    if (!entry) return; // already matched by its `message` frame
    pending.delete(key);
    var el = entry.el;
    var existing = bySeq.get(f.seq);
    if (existing && existing !== el) { el.remove(); return; }
    el.setAttribute('data-state', 'complete');
    setNote(el, '');
    assignSeq(el, f.seq, f.message_id);
  }
  function failPending(id, text) {
    var key = String(id).toLowerCase();
    var entry = pending.get(key);
    if (!entry) return false;
    pending.delete(key);
    entry.el.setAttribute('data-state', 'failed');
    setNote(entry.el, L.notSent + (text ? ': ' + text : ''));
    return true;
  }

  // ---- notes ----------------------------------------------------------------------------------
  var noteInFlight = null; // the text of a note sent but not seen back yet
  function renderNote(n) {
    if (!n) return;
    if (n.id != null && notesEl.querySelector('[data-note-id="' + String(Number(n.id)) + '"]')) return;
    var li = make('li', 'hd-note');
    if (n.id != null) li.setAttribute('data-note-id', String(Number(n.id)));
    var meta = li.appendChild(make('span', 'hd-note-meta', (nameOf(n.author) || L.none) + ' · '));
    var t = meta.appendChild(make('time', null, hhmm(n.created_at)));
    if (n.created_at) t.setAttribute('datetime', n.created_at);
    li.appendChild(make('span', 'hd-note-text', n.text == null ? '' : String(n.text)));
    notesEl.appendChild(li);
    if (noteInFlight !== null && String(n.text).trim() === noteInFlight) noteInFlight = null;
  }

  // ---- state: conversation status and handoff --------------------------------------------------
  function setStatus(s) {
    if (!s) return;
    status = s;
    root.setAttribute('data-status', s);
    statusEl.setAttribute('data-status', s);
    statusEl.textContent = (L.statuses && L.statuses[s]) || s;
    if (s === 'resolved') { hideVisitorTyping(); stopTyping(); }
    refreshControls();
  }
  // Replies wait in `pending` while the socket is down, so the composer stays usable; the
  // actions need the socket, and are disabled until it is live rather than lost on a click.
  function refreshControls() {
    var closed = status === 'resolved';
    var live = root.getAttribute('data-connection') === 'live';
    [reply, sendBtn, canned].forEach(function (c) { c.disabled = closed; });
    [resolveBtn, returnBtn, transferTo, transferBtn].forEach(function (c) { c.disabled = closed || !live; });
    noteAddBtn.disabled = !live;
    claimBtn.hidden = !(handoff && handoff.status === 'waiting' && !closed);
    claimBtn.disabled = !live;
  }
  function setText(id, text) {
    var el = $(id);
    if (el) el.textContent = text || L.none;
  }
  function setHandoff(h) {
    if (!h) return;
    if (h.conversation != null && String(h.conversation) !== String(CONV)) return;
    handoff = h;
    var mine = !!(h.agent && String(h.agent.id) === String(ME) && h.status === 'assigned');
    root.setAttribute('data-mine', mine ? 'true' : 'false');
    handoffEl.setAttribute('data-handoff', String(h.id));
    handoffEl.setAttribute('data-handoff-status', h.status || '');
    setText('hd-handoff-status', (L.handoffStatuses && L.handoffStatuses[h.status]) || h.status);
    if ('agent' in h) setText('hd-handoff-agent', nameOf(h.agent));
    if ('team' in h) setText('hd-handoff-team', nameOf(h.team));
    if ('reason' in h) setText('hd-handoff-reason', h.reason);
    if ('rule' in h && $('hd-handoff-rule')) {
      $('hd-handoff-rule').setAttribute('data-rule', h.rule || '');
      setText('hd-handoff-rule', (L.rules && L.rules[h.rule]) || h.rule);
    }
    refreshControls();
  }

  // ---- the customer's typing indicator ---------------------------------------------------------
  var visitorTypingTimer = 0;
  function showVisitorTyping() {
    typingEl.hidden = false;
    clearTimeout(visitorTypingTimer);
    visitorTypingTimer = setTimeout(hideVisitorTyping, VISITOR_TYPING_MS);
  }
  function hideVisitorTyping() {
    clearTimeout(visitorTypingTimer);
    typingEl.hidden = true;
  }

  // ---- our typing, debounced -------------------------------------------------------------------
  var typingOn = false;
  var typingSentAt = 0;
  var typingIdle = 0;
  function typed() {
    if (status === 'resolved') return;
    var now = Date.now();
    if (!typingOn || now - typingSentAt > TYPING_REFRESH_MS) {
      if (send({ type: 'typing', conversation: CONV, active: true })) {
        typingOn = true;
        typingSentAt = now;
      }
    }
    clearTimeout(typingIdle);
    typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
  }
  function stopTyping() {
    clearTimeout(typingIdle);
    if (!typingOn) return;
    typingOn = false;
    send({ type: 'typing', conversation: CONV, active: false });
  }

  // ---- the socket (static/helpdesk/reconnecting-socket.js) ----------------------------------
  var resyncing = false;
  var resendPending = false; // the next transcript follows a (re)connect

  var socket = window.HelpdeskSocket({
    url: function () {
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + (cfg.wsPath || '/ws/agent/');
    },
    pingMs: PING_MS,
    deadMs: DEAD_MS,
    onConnecting: function () { setConnection('connecting'); },
    onOpen: function () {
      setConnection('live');
      resyncing = true;
      resendPending = true;
      send({ type: 'open', conversation: CONV });
    },
    onFrame: function (f) { handle(f); },
    onLost: function () {
      typingOn = false;
      hideVisitorTyping();
      setConnection('down');
    },
  });
  function send(obj) { return socket.send(obj); }
  function setConnection(state) {
    root.setAttribute('data-connection', state);
    connEl.textContent = state === 'live' ? L.live : state === 'connecting' && !socket.attempts() ? L.connecting : L.reconnecting;
    refreshControls();
  }
  // Frames were lost (a seq skipped): ask for the whole transcript again.
  function resync() {
    if (resyncing) return;
    if (send({ type: 'open', conversation: CONV })) resyncing = true;
  }

  // ---- frames ----------------------------------------------------------------------------------
  function handle(f) {
    switch (f.type) {
      case 'transcript': onTranscript(f); break;
      case 'message': if (sameConv(f)) renderMessage(f.message); break;
      case 'delta': if (sameConv(f)) onDelta(f); break;
      case 'done': if (sameConv(f)) onDone(f); break;
      case 'ack': onAck(f); break;
      case 'note': if (sameConv(f)) renderNote(f.note); break;
      case 'typing':
        if (sameConv(f) && f.author === 'visitor') { if (f.active) showVisitorTyping(); else hideVisitorTyping(); }
        break;
      case 'status': if (sameConv(f)) setStatus(f.status); break;
      case 'handoff': case 'claimed':
        if (f.handoff && String(f.handoff.conversation) === String(CONV)) setHandoff(f.handoff);
        break;
      case 'feedback':
        if (sameConv(f)) {
          var el = log.querySelector('[data-message-id="' + String(Number(f.message_id)) + '"]');
          if (el) setFeedback(el, f.vote || null);
        }
        break;
      case 'contact': if (sameConv(f)) setText('hd-contact-email', f.email); break;
      case 'error': onError(f); break;
      default: break; // pong, and the customer's room frames the console has no use for
    }
  }

  function onTranscript(f) {
    var c = f.conversation || {};
    if (c.id != null && String(c.id) !== String(CONV)) return;
    resyncing = false;
    (f.messages || []).forEach(renderMessage);
    (f.notes || []).forEach(renderNote);
    if (f.handoff) setHandoff(f.handoff);
    if (c.status) setStatus(c.status);
    if (c.contact_email) setText('hd-contact-email', c.contact_email);
    // Replies still waiting for an ack go again with the same id; the server stores each
    // client id once, so a reply that was stored before the socket dropped is only acked.
    if (resendPending) {
      resendPending = false;
      pending.forEach(function (entry, id) {
        send({ type: 'reply', conversation: CONV, id: id, text: entry.text });
      });
    }
    scrollDown(true);
  }

  function onError(f) {
    var text = f.message || f.code || 'Error';
    if (f.id && failPending(f.id, text)) { showError(text); return; }
    if (f.code === 'bot_unavailable') return; // the customer's room; a system message follows
    if (noteInFlight !== null) {
      // Notes have no ack; an error right after one most likely refused it.
      if (!noteInput.value) noteInput.value = noteInFlight;
      noteInFlight = null;
    }
    if (f.code === 'not_found') resyncing = false;
    showError(text);
  }

  // ---- controls --------------------------------------------------------------------------------
  replyForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = reply.value.trim();
    if (!text || status === 'resolved') return;
    if (text.length > MAX_REPLY) { showError(L.tooLong); return; }
    clearError();
    var id = uuid();
    addPending(id, text);
    reply.value = '';
    stopTyping();
    send({ type: 'reply', conversation: CONV, id: id, text: text });
    reply.focus();
  });
  reply.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (typeof replyForm.requestSubmit === 'function') replyForm.requestSubmit();
      else replyForm.dispatchEvent(new Event('submit', { cancelable: true }));
    }
  });
  reply.addEventListener('input', function () {
    if (reply.value.trim()) typed(); else stopTyping();
  });
  reply.addEventListener('blur', stopTyping);

  canned.addEventListener('change', function () {
    var option = canned.options[canned.selectedIndex];
    var text = option && option.value ? option.getAttribute('data-text') || '' : '';
    if (!text) return;
    reply.value = text;
    canned.value = '';
    reply.focus();
    typed();
  });

  function action(frame) {
    clearError();
    if (!send(frame)) showError(L.reconnecting);
  }
  claimBtn.addEventListener('click', function () {
    if (handoff) action({ type: 'claim', handoff: handoff.id });
  });
  resolveBtn.addEventListener('click', function () {
    stopTyping();
    action({ type: 'resolve', conversation: CONV });
  });
  returnBtn.addEventListener('click', function () {
    stopTyping();
    action({ type: 'return_to_bot', conversation: CONV });
  });
  transferBtn.addEventListener('click', function () {
    var m = /^(agent|team):(\d+)$/.exec(transferTo.value || '');
    if (!m) { showError(L.pickTransfer); return; }
    var frame = { type: 'transfer', conversation: CONV };
    frame[m[1]] = Number(m[2]);
    action(frame);
    transferTo.value = '';
  });
  noteForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var text = noteInput.value.trim();
    if (!text) return;
    clearError();
    if (!send({ type: 'note', conversation: CONV, text: text })) { showError(L.reconnecting); return; }
    noteInFlight = text;
    noteInput.value = '';
  });

  // ---- start -----------------------------------------------------------------------------------
  // The server wrote times in its own zone; show them in the agent's, like the live ones.
  Array.prototype.forEach.call(root.querySelectorAll('time[datetime]'), function (t) {
    if (t.classList.contains('hd-msg-time') || t.parentNode.classList.contains('hd-note-meta')) {
      t.textContent = hhmm(t.getAttribute('datetime'));
    }
  });
  Array.prototype.forEach.call(log.querySelectorAll('.hd-msg[data-seq]'), function (el) {
    var seq = Number(el.getAttribute('data-seq'));
    bySeq.set(seq, el);
    if (seq > maxSeq) maxSeq = seq;
  });
  window.addEventListener('pagehide', stopTyping);
  setConnection('connecting');
  if (handoff) setHandoff(handoff);
  scrollDown(true);
  socket.connect();
})();
