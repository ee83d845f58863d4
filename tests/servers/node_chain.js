// A Node.js hop of a service chain, for the trace tests.
// Usage: node node_chain.js PORT NEXT_PORT. Each request calls NEXT_PORT with
// the same path (keep-alive agent), then answers after a random 0-5 ms, so
// the requests in flight finish in a different order than they came.
// CALL_FROM_TIMER=1: the call itself is made from a setTimeout of 0-8 ms, on
// a later event-loop turn than the request's read.
// Prints "ready" once it listens.
const http = require("http");

const next = Number(process.argv[3]);
const agent = new http.Agent({ keepAlive: true });

const callFromTimer = process.env.CALL_FROM_TIMER === "1";

const server = http.createServer((req, res) => {
  const call = () => http
    .get({ host: "127.0.0.1", port: next, path: req.url, agent }, (downstream) => {
      let body = "";
      downstream.on("data", (chunk) => (body += chunk));
      downstream.on("end", () => {
        setTimeout(() => {
          res.writeHead(200, { "Content-Type": "text/plain" });
          res.end(body);
        }, Math.random() * 5);
      });
    })
        .on("error", (err) => {
      res.writeHead(502);
      res.end(String(err));
    });
  if (callFromTimer) {
    setTimeout(call, Math.random() * 8);
  } else {
    call();
  }
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("ready"));
