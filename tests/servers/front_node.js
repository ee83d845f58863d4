// A front service in Node.js for the accuracy benchmark's runtime matrix.
//
// Usage: node front_node.js PORT AUX_PORT LEAF_PORT. CLIENT=agent (http with
// a keep-alive http.Agent, the default) or CLIENT=fetch (global fetch,
// undici); FANOUT=2 for two parallel leaf calls (Promise.all); MAX_SOCKETS
// bounds the http.Agent's pool (64), so that calls queue. Every GET
// awaits a 0-5 ms timer, awaits a call to AUX_PORT, then to LEAF_PORT, with
// the same path; then answers 200. Prints "ready" once listening.
const http = require("http");

const [port, aux, leaf] = process.argv.slice(2).map(Number);
const fanout = Number(process.env.FANOUT || 1);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(process.env.MAX_SOCKETS || 64) });

function viaAgent(target, path) {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port: target, path, agent }, (response) => {
      response.resume();
      response.on("end", resolve);
    });
    request.on("error", reject);
  });
}

async function viaFetch(target, path) {
  const response = await fetch(`http://127.0.0.1:${target}${path}`);
  await response.text();
}

const call = process.env.CLIENT === "fetch" ? viaFetch : viaAgent;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

http
  .createServer(async (req, res) => {
    try {
      await sleep(Math.random() * 5);
      await call(aux, req.url);
      await Promise.all(Array.from({ length: fanout }, () => call(leaf, req.url)));
      res.end("front\n");
    } catch (e) {
      res.statusCode = 502;
      res.end(String(e));
    }
  })
  .listen(port, "127.0.0.1", () => console.log("ready"));
