/*! Helpdesk widget loader - docs/widget.md */
(function (W, D) {
'use strict';
var s = D.currentScript || D.querySelector('script[data-site-key]'), key = s && s.getAttribute('data-site-key'), base;
if (!key) return console.error('Helpdesk: data-site-key is missing');
if (W.__helpdeskWidget) return console.warn('Helpdesk: widget.js loaded twice');
try { base = new URL(s.src).origin; } catch (e) { return console.error('Helpdesk: bad script src'); }
W.__helpdeskWidget = { siteKey: key, base: base };
var H = 'Helpdesk', P = 'helpdesk:' + key + ':', ACTIVE = P + 'active', RESET = P + 'reset';
if (typeof W[H] != 'function') W[H] = function () { (W[H].q = W[H].q || []).push(arguments); };
var L = /^zh/i.test(navigator.language) ? ['打开聊天', '关闭聊天'] : ['Open chat', 'Close chat'];
var ICON = ['M4 5h16v11H10l-6 4z', 'M6 6l12 12M18 6 6 18'];
var CSS = `:host{all:initial}
.l,.p{position:fixed;right:20px;z-index:2147483000}
.l{bottom:20px;width:56px;height:56px;padding:0;border:0;border-radius:50%;
background:#2563eb;color:#fff;cursor:pointer;box-shadow:0 4px 14px #0004;display:flex;align-items:center;justify-content:center}
.l:focus-visible{outline:3px solid #93c5fd;outline-offset:3px}
svg{width:26px;height:26px;fill:none;stroke:currentColor;stroke-width:2;stroke-linejoin:round}
.b{position:absolute;top:-4px;right:-4px;min-width:10px;padding:0 5px;border-radius:10px;background:#dc2626;
font:700 12px/20px system-ui,sans-serif}
.p{bottom:88px;width:380px;max-width:calc(100vw - 40px);height:min(640px,calc(100vh - 108px));
border-radius:14px;overflow:hidden;background:#fff;box-shadow:0 10px 40px #0005;transition:.18s}
.p[hidden]{display:block;visibility:hidden;opacity:0;transform:translateY(12px)}
iframe{display:block;width:100%;height:100%;border:0}
@media(max-width:480px){.p{inset:0;width:100%;height:100%;max-width:none;border-radius:0}.o .l{display:none}}
@media(prefers-reduced-motion:reduce){.p{transition:none}}`;
var host, wrap, btn, badge, panel, path, frame, ready = 0, open = 0, focusNext = 0, q = [];

function get(k) { try { return localStorage.getItem(k); } catch (e) { return null; } }
function set(k, v) { try { v ? localStorage.setItem(k, v) : localStorage.removeItem(k); } catch (e) {} }
function el(t) { return D.createElement(t); }
function V(v, f) { return { helpdesk: v, focus: f }; }
function fire(n, d) { W.dispatchEvent(new CustomEvent('helpdesk:' + n, { detail: d || { siteKey: key } })); }

function paint() {
  path.setAttribute('d', ICON[open]);
  btn.setAttribute('aria-label', L[open]);
  btn.setAttribute('aria-expanded', !!open);
  wrap.className = open ? 'o' : '';
  panel.hidden = !open;
  if (open) badge.hidden = true;
}
function post(m) { frame.contentWindow && frame.contentWindow.postMessage(m, base); }
function send(m) { ready ? post(m) : q.push(m); }
function make() {
  if (frame) return;
  frame = panel.appendChild(el('iframe'));
  frame.title = 'Chat';
  frame.src = base + '/widget/frame/' + encodeURIComponent(key) + '/?origin=' + encodeURIComponent(location.origin) + (get(RESET) ? '&reset=1' : '');
}
function show() {
  if (open) return;
  make(); open = 1; set(ACTIVE, '1'); paint(); frame.focus();
  ready ? post(V('opened')) : focusNext = 1;
  fire('open');
}
function hide() {
  if (!open) return;
  var inside = D.activeElement == host;
  open = 0; paint(); post(V('closed'));
  if (inside) btn.focus();
  fire('close');
}
function toggle() { open ? hide() : show(); }
var cmds = {
  open: show, close: hide, toggle: toggle,
  setAttributes: function (a) {
    if (!a || typeof a != 'object' || Array.isArray(a)) return console.warn('Helpdesk: setAttributes needs an object');
    send({ helpdesk: 'setAttributes', attributes: JSON.parse(JSON.stringify(a)) });
  },
  reset: function () {
    set(ACTIVE); set(RESET, '1'); badge.hidden = true;
    frame ? send(V('reset')) : q = [];
  }
};
function api(c) {
  if (!{}.hasOwnProperty.call(cmds, c)) return console.warn('Helpdesk: unknown command ' + String(c));
  try { cmds[c].apply(null, [].slice.call(arguments, 1)); } catch (e) { console.error('Helpdesk:', e); }
}
function onMessage(e) {
  var m = e.data, x;
  if (e.origin !== base || !frame || e.source !== frame.contentWindow || !m || typeof m.helpdesk != 'string') return;
  switch (m.helpdesk) {
    case 'ready':
      if (ready) break;
      ready = 1;
      if (focusNext && open && D.activeElement == host) frame.focus();
      post(open ? V('opened', !!focusNext) : V('closed'));
      focusNext = 0; x = q; q = []; x.forEach(post);
      break;
    case 'reset': set(RESET); break;
    case 'close': hide(); break;
    case 'unread':
      x = +m.count || 0;
      badge.textContent = x > 9 ? '9+' : x;
      badge.hidden = open || x < 1;
      break;
    case 'message':
      x = m.message || {};
      fire('message', { author: x.author, text: x.text, id: x.id, seq: x.seq });
  }
}

function boot() {
  var root, svg, sheet;
  host = el('div'); wrap = el('div'); btn = el('button'); badge = el('span'); panel = el('div');
  host.setAttribute('data-helpdesk-widget', key);
  host.style.setProperty('all', 'initial', 'important');
  root = host.attachShadow({ mode: 'open' });
  try { sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet]; } catch (e) {
    root.appendChild(el('style')).textContent = CSS;
  }
  svg = D.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 24 24'); svg.setAttribute('aria-hidden', 'true');
  path = svg.appendChild(D.createElementNS(svg.namespaceURI, 'path'));
  btn.type = 'button'; btn.className = 'l'; btn.onclick = toggle;
  badge.className = 'b'; badge.hidden = true; badge.setAttribute('aria-hidden', 'true');
  panel.className = 'p';
  btn.append(svg, badge); wrap.append(panel, btn); root.append(wrap); D.body.append(host);
  W.addEventListener('message', onMessage);
  paint();
  if (get(ACTIVE)) make();
  var queued = W[H].q || [];
  W[H] = api;
  for (var i = 0; i < queued.length; i++) api.apply(null, queued[i]);
  fire('ready');
}

D.body ? boot() : D.addEventListener('DOMContentLoaded', boot);
})(window, document);
