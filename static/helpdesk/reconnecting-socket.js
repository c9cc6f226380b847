/* Helpdesk's reconnecting WebSocket: one copy for the widget frame, the agents' queue and
 * console pages (loaded by a <script> before them; it only defines window.HelpdeskSocket).
 *
 * Plain ES2017, no dependencies, no build step. It opens the socket, parses JSON text frames,
 * pings every `pingMs` and drops a socket that has been silent for `deadMs` (a half-open TCP
 * connection never fires `close`), and reconnects with capped, jittered exponential backoff:
 * 0.5 s, 1 s, 2 s … 10 s, at once when the browser comes back online or the tab is shown again.
 *
 *   var socket = HelpdeskSocket({
 *     url: function () { return 'wss://…'; },
 *     onConnecting: function () {},   // before each attempt
 *     onOpen: function () {},         // the socket is open; say hello
 *     onFrame: function (frame) {},   // each JSON object frame with a string `type`
 *     onLost: function () {},         // closed or dead; a reconnect is scheduled after this
 *     resetOnOpen: true,              // false: the caller calls resetBackoff() (e.g. on `ready`)
 *   });
 *   socket.connect(); socket.send({type: 'ping'}); socket.attempts();
 */
(function () {
  'use strict';

  window.HelpdeskSocket = function (options) {
    var pingMs = options.pingMs || 25000;
    var deadMs = options.deadMs || 60000;
    var resetOnOpen = options.resetOnOpen !== false;
    var noop = function () {};
    var onConnecting = options.onConnecting || noop;
    var onOpen = options.onOpen || noop;
    var onFrame = options.onFrame || noop;
    var onLost = options.onLost || noop;

    var ws = null;
    var attempts = 0;
    var reconnectTimer = 0;
    var pingTimer = 0;
    var lastRx = 0;

    function send(obj) {
      if (!ws || ws.readyState !== 1) return false;
      try { ws.send(JSON.stringify(obj)); return true; } catch (e) { return false; }
    }
    function connect() {
      clearTimeout(reconnectTimer);
      reconnectTimer = 0;
      if (ws) return;
      onConnecting();
      var sock;
      try { sock = new WebSocket(options.url()); } catch (e) { scheduleReconnect(); return; }
      ws = sock;
      sock.onopen = function () {
        if (ws !== sock) return;
        lastRx = Date.now();
        if (resetOnOpen) attempts = 0;
        onOpen();
        clearInterval(pingTimer);
        pingTimer = setInterval(ping, pingMs);
      };
      sock.onmessage = function (e) {
        if (ws !== sock) return;
        lastRx = Date.now();
        if (typeof e.data !== 'string') return;
        var f;
        try { f = JSON.parse(e.data); } catch (err) { return; }
        if (!f || typeof f.type !== 'string') return;
        try { onFrame(f); } catch (err) { console.error('Helpdesk: cannot handle', f.type, err); }
      };
      sock.onclose = function () { if (ws === sock) lost(); };
    }
    function ping() {
      if (!ws) return;
      if (Date.now() - lastRx > deadMs) { drop(); lost(); return; }
      send({ type: 'ping' });
    }
    // Close without a reconnect (the caller decides what comes next).
    function drop() {
      var sock = ws;
      ws = null;
      clearInterval(pingTimer);
      if (sock) {
        sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
        try { sock.close(); } catch (e) { /* already closed */ }
      }
    }
    function lost() {
      ws = null;
      clearInterval(pingTimer);
      onLost();
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

    return {
      connect: connect,
      send: send,
      drop: drop,
      // Drop the socket and forget a scheduled reconnect, e.g. before starting afresh.
      stop: function () {
        drop();
        clearTimeout(reconnectTimer);
        reconnectTimer = 0;
      },
      reconnectNow: reconnectNow,
      resetBackoff: function () { attempts = 0; },
      attempts: function () { return attempts; },
      isOpen: function () { return !!ws; },
    };
  };
})();
