// A Node.js hop of a service chain, for the trace tests.
// Usage: node node_chain.js PORT NEXT_PORT. Each request calls NEXT_PORT with
// the same path (keep-alive agent), then answers after a random 0-5 ms, so
// the requests in flight finish in a different order than they came.
// Prints "ready" once it listens.
const http = require("http");

const next = Number(process.argv[3]);
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  http
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
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2]), "127.0.0.1", () => console.log("ready"));
