/*! Helpdesk widget loader. Embed: <script src="https://HOST/widget.js" data-site-key="KEY" async></script> (docs/widget.md) */
(function () {
  'use strict';
  var W = window, D = document, NS = 'helpdesk';
  var script = D.currentScript || D.querySelector('script[data-site-key]');
  var key = script && script.getAttribute('data-site-key');
  if (!key) { console.error('Helpdesk: data-site-key is missing on the widget.js <script>.'); return; }
  if (W.__helpdeskWidget) { console.warn('Helpdesk: widget.js is loaded twice; the second copy is ignored.'); return; }
  var base = '';
  try { base = new URL(script.src).origin; } catch (e) { /* no src */ }
  if (!base || base === 'null') { console.error('Helpdesk: cannot tell the Helpdesk origin from the script src.'); return; }
  W.__helpdeskWidget = { siteKey: key, base: base };
  // A queueing stub, so calls made before <body> exists are replayed in order.
  if (typeof W.Helpdesk !== 'function') W.Helpdesk = function () { (W.Helpdesk.q = W.Helpdesk.q || []).push(arguments); };

  var zh = /^zh/i.test(navigator.language || '');
  var L = zh ? ['打开聊天', '关闭聊天'] : ['Open chat', 'Close chat'];
  var P = NS + ':' + key + ':', ACTIVE = P + 'active', RESET = P + 'reset';
  function get(k) { try { return W.localStorage.getItem(k); } catch (e) { return null; } }
  function set(k, v) { try { if (v) W.localStorage.setItem(k, v); else W.localStorage.removeItem(k); } catch (e) { /* storage blocked */ } }
  function fire(name, detail) { try { W.dispatchEvent(new CustomEvent(NS + ':' + name, { detail: detail })); } catch (e) { console.error(e); } }

  var CSS = ':host{all:initial}' +
    '.l{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;border:0;border-radius:50%;padding:0;margin:0;' +
    'background:#2563eb;color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);display:flex;align-items:center;justify-content:center;transition:transform .15s}' +
    '.l:hover{transform:scale(1.06)}.l:focus-visible{outline:3px solid #93c5fd;outline-offset:3px}' +
    '.l svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}' +
    '.b{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;padding:0 5px;box-sizing:border-box;border-radius:10px;background:#dc2626;color:#fff;' +
    'font:700 12px/20px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;text-align:center}' +
    '.p{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:380px;height:min(640px,calc(100vh - 108px));max-width:calc(100vw - 40px);' +
    'border-radius:14px;overflow:hidden;box-shadow:0 10px 40px rgba(0,0,0,.28);background:#fff;transition:opacity .18s,transform .18s,visibility .18s}' +
    '.p[hidden]{display:block;visibility:hidden;opacity:0;transform:translateY(12px);pointer-events:none}' +
    'iframe{display:block;width:100%;height:100%;border:0;color-scheme:normal}' +
    '@media (max-width:480px){.p{inset:0;width:100%;height:100%;max-width:none;border-radius:0}.o .l{display:none}}' +
    '@media (prefers-reduced-motion:reduce){.p,.l{transition:none}}';
  var ICON = [['M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.4A8 8 0 1 1 21 12z'], ['M6 6l12 12', 'M18 6L6 18']];

  function boot() {
    var host = D.createElement('div'), root, btn, badge, panel, frame = null, ready = false, isOpen = false, focusNext = false, outq = [];
    host.setAttribute('data-helpdesk-widget', key);
    host.style.setProperty('all', 'initial', 'important');
    root = host.attachShadow ? host.attachShadow({ mode: 'open' }) : host;
    try { var sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet]; } catch (e) {
      var st = D.createElement('style'); st.textContent = CSS; root.appendChild(st);
    }
    var wrap = D.createElement('div');
    btn = D.createElement('button');
    btn.type = 'button'; btn.className = 'l'; btn.setAttribute('part', 'launcher');
    btn.setAttribute('aria-controls', 'hd-panel');
    badge = D.createElement('span'); badge.className = 'b'; badge.hidden = true; badge.setAttribute('aria-hidden', 'true');
    panel = D.createElement('div'); panel.className = 'p'; panel.id = 'hd-panel'; panel.hidden = true;
    btn.addEventListener('click', function () { toggle(); });
    wrap.appendChild(panel); wrap.appendChild(btn);
    root.appendChild(wrap); D.body.appendChild(host);

    function icon(paths) {
      var svg = D.createElementNS('http://www.w3.org/2000/svg', 'svg');
      svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('aria-hidden', 'true');
      paths.forEach(function (d) { var p = D.createElementNS(svg.namespaceURI, 'path'); p.setAttribute('d', d); svg.appendChild(p); });
      return svg;
    }
    function paint() {
      btn.textContent = '';
      btn.appendChild(icon(ICON[isOpen ? 1 : 0])); btn.appendChild(badge);
      btn.setAttribute('aria-label', L[isOpen ? 1 : 0]);
      btn.setAttribute('aria-expanded', String(isOpen));
      wrap.className = isOpen ? 'o' : '';
      panel.hidden = !isOpen;
      if (isOpen) badge.hidden = true;
    }
    function post(msg) { if (frame && frame.contentWindow) frame.contentWindow.postMessage(msg, base); }
    function send(msg) { if (ready) post(msg); else outq.push(msg); }
    function makeFrame(reset) {
      if (frame) return;
      frame = D.createElement('iframe');
      frame.title = 'Chat';
      frame.setAttribute('allow', 'clipboard-write');
      frame.src = base + '/widget/frame/' + encodeURIComponent(key) + '/?origin=' + encodeURIComponent(location.origin) + (reset ? '&reset=1' : '');
      panel.appendChild(frame);
    }
    function open() {
      if (isOpen) return;
      makeFrame(get(RESET));
      isOpen = true; set(ACTIVE, '1'); paint();
      try { frame.focus(); } catch (e) { /* ignore */ }
      if (ready) post({ helpdesk: 'opened' }); else focusNext = true;
      fire('open', { siteKey: key });
    }
    function close() {
      if (!isOpen) return;
      var inside = D.activeElement === host;
      isOpen = false; paint();
      post({ helpdesk: 'closed' });
      if (inside) btn.focus();
      fire('close', { siteKey: key });
    }
    function toggle() { if (isOpen) close(); else open(); }
    var commands = {
      open: open, close: close, toggle: toggle,
      setAttributes: function (attrs) {
        if (!attrs || typeof attrs !== 'object' || Array.isArray(attrs)) { console.warn('Helpdesk: setAttributes expects an object.'); return; }
        send({ helpdesk: 'setAttributes', attributes: JSON.parse(JSON.stringify(attrs)) });
      },
      reset: function () {
        set(ACTIVE, ''); set(RESET, '1');
        badge.hidden = true;
        if (frame) send({ helpdesk: 'reset' }); else outq = [];
      }
    };
    function Helpdesk(cmd) {
      var fn = Object.prototype.hasOwnProperty.call(commands, cmd) && commands[cmd];
      if (!fn) { console.warn('Helpdesk: unknown command ' + JSON.stringify(String(cmd))); return; }
      try { fn.apply(null, [].slice.call(arguments, 1)); } catch (e) { console.error('Helpdesk:', e); }
    }

    W.addEventListener('message', function (e) {
      var m = e.data;
      if (e.origin !== base || !frame || e.source !== frame.contentWindow || !m || typeof m.helpdesk !== 'string') return;
      switch (m.helpdesk) {
        case 'ready':
          if (!ready) {
            ready = true;
            if (focusNext && isOpen && D.activeElement === host) frame.focus();
            post(isOpen ? { helpdesk: 'opened', focus: focusNext } : { helpdesk: 'closed' });
            focusNext = false;
            var q = outq; outq = []; q.forEach(post);
          }
          break;
        case 'reset': set(RESET, ''); break;
        case 'close': close(); break;
        case 'unread':
          var n = +m.count || 0;
          badge.textContent = n > 9 ? '9+' : String(n);
          badge.hidden = isOpen || n < 1;
          break;
        case 'message':
          var x = m.message || {};
          fire('message', { author: x.author, text: x.text, id: x.id, seq: x.seq });
          break;
      }
    });

    paint();
    if (get(ACTIVE)) makeFrame(get(RESET));
    var queued = (W.Helpdesk && W.Helpdesk.q) || [];
    W.Helpdesk = Helpdesk;
    for (var i = 0; i < queued.length; i++) Helpdesk.apply(null, queued[i]);
    fire('ready', { siteKey: key });
  }

  if (D.body) boot(); else D.addEventListener('DOMContentLoaded', boot);
})();
