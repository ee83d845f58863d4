// Run inside a Node.js process by the tracer agent (--node-context-script),
// through the inspector. It tells the kernel which inbound request each
// outbound request is made for, from Node's own async context
// (AsyncLocalStorage follows timers, promises and `await`):
// - as a server request starts: "request <id> is the one open on socket fd";
// - before a client request's first bytes are written on a socket: "the
//   request on socket fd is made for request <id>" (0: for none).
// Each message is the path of a failing fs.accessSync under /dev/null (a
// file, so nothing is looked up), which a uprobe on libuv's uv_fs_access
// reads. Nothing else in the process changes; loading it twice is a no-op.
(() => {
  const marker = Symbol.for("tracer-agent.node-context");
  if (globalThis[marker]) return "already loaded";
  const { AsyncLocalStorage } = require("async_hooks");
  const dc = require("diagnostics_channel");
  const fs = require("fs");
  const net = require("net");
  const http = require("http");
  const current = new AsyncLocalStorage();
  const madeFor = Symbol("tracer-agent.made-for");
  const announced = Symbol("tracer-agent.announced");
  let lastId = 0;
  const tell = (kind, fd, id) => {
    try {
      fs.accessSync(`/dev/null/tracer/${kind}/${fd}/${id}`);
    } catch {}
  };
  const fdOf = (socket) => {
    const fd = socket && socket._handle && socket._handle.fd;
    return typeof fd === "number" && fd >= 0 ? fd : -1;
  };

  dc.subscribe("http.server.request.start", ({ socket }) => {
    const fd = fdOf(socket);
    if (fd < 0) return;
    lastId += 1;
    tell("i", fd, lastId);
    current.enterWith(lastId);
  });
  const remember = (request) => {
    if (!(madeFor in request)) request[madeFor] = current.getStore() || 0;
  };
  // A ClientRequest's constructor, in its caller's context, hands it to its
  // agent (which may queue it) or to a socket of its own.
  for (const [proto, method] of [
    [http.Agent.prototype, "addRequest"],
    [http.ClientRequest.prototype, "onSocket"],
  ]) {
    const original = proto[method];
    proto[method] = function (request, ...rest) {
      remember(method === "onSocket" ? this : request);
      return original.call(this, request, ...rest);
    };
  }
  dc.subscribe("undici:request:create", ({ request }) => remember(request));
  // undici (fetch) writes a request's head right after this, on `socket`.
  dc.subscribe("undici:client:sendHeaders", ({ request, socket }) => {
    const fd = fdOf(socket);
    if (fd >= 0) tell("o", fd, request[madeFor] || 0);
  });
  // http.ClientRequest: every socket write passes here; the request being
  // written is the socket's _httpMessage (a queued request too, whichever
  // request's callback freed the socket).
  const writeGeneric = net.Socket.prototype._writeGeneric;
  net.Socket.prototype._writeGeneric = function (writev, data, encoding, cb) {
    const request = this._httpMessage;
    if (request && madeFor in request && this[announced] !== request && !this.connecting) {
      const fd = fdOf(this);
      if (fd >= 0) {
        this[announced] = request;
        tell("o", fd, request[madeFor]);
      }
    }
    return writeGeneric.call(this, writev, data, encoding, cb);
  };
  globalThis[marker] = true;
  return "loaded";
})();
