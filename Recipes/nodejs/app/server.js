// imgbench's Node.js recipe: a small HTTP server using only Node's standard library.
//   GET /        a JSON greeting with the host name and the Node version
//   GET /healthz "ok"
//   GET /work?n=N  a little CPU work (sums of square roots), for the runtime benchmarks
// `node server.js --self-test` starts the server on a free port, asks it once and exits 0 on success.
'use strict';
const http = require('http');
const os = require('os');

function work(n) {
  let s = 0;
  for (let i = 1; i <= n; i++) s += Math.sqrt(i);
  return s;
}

function handler(req, res) {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    return res.end('ok\n');
  }
  if (url.pathname === '/work') {
    const n = Math.min(Number(url.searchParams.get('n')) || 100000, 1e8);
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ n, sum: work(n) }) + '\n');
  }
  if (url.pathname === '/') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ app: 'imgbench-node-app', host: os.hostname(), node: process.version }) + '\n');
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
}

const server = http.createServer(handler);

if (process.argv.includes('--self-test')) {
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    http.get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => {
        console.log(`self-test: ${res.statusCode} ${body.trim()}`);
        server.close();
        process.exit(res.statusCode === 200 ? 0 : 1);
      });
    }).on('error', (e) => { console.error(`self-test: ${e.message}`); process.exit(1); });
  });
} else {
  const port = Number(process.env.PORT) || 8080;
  server.listen(port, () => console.log(`imgbench-node-app listening on port ${port}`));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
