// HTTP/1.1 keep-alive server on Node.js for the tests; HTTPS (Node's own
// OpenSSL) when given a certificate and its key.
// Usage: node node_server.js PORT [CERT KEY]. Routes as http11_server.py: /hello,
// /status/NNN, POST echoes the body length. Prints "ready" once it listens.
const fs = require("fs");
const http = require("http");
const https = require("https");

const [port, cert, key] = process.argv.slice(2);
const handler = (req, res) => {
  let length = 0;
  req.on("data", (chunk) => (length += chunk.length));
  req.on("end", () => {
    const path = req.url.split("?")[0];
    if (req.method === "POST") {
      res.writeHead(201, { "Content-Type": "text/plain" });
      res.end(`${length}\n`);
    } else if (path.startsWith("/status/")) {
      res.writeHead(Number(path.split("/")[2]), { "Content-Type": "text/plain" });
      res.end("status\n");
    } else {
      // Timer: the response is written on a later event-loop turn.
      setTimeout(() => {
        res.writeHead(200, { "Content-Type": "text/plain" });
        res.end("hello from node\n");
      }, 1);
    }
  });
};
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, handler)
  : http.createServer(handler);
server.keepAliveTimeout = 60000;
server.listen(Number(port), "127.0.0.1", () => console.log("ready"));
