// A loopback HTTP front for measuring what goes on the wire: it serves web/ from this checkout
// (gzipped as the server does, with the server's own headers) and passes everything else (the
// API, WHEP, the WebSocket upgrade) through to the real server.
//
// Why not the fixture's `context.route`: a routed request is answered inside the browser, so
// Chromium's network emulation (`Network.emulateNetworkConditions`) does not slow it and its
// `Accept-Encoding` is added only after the route saw the request. Through this front the page's
// files come over a real socket, throttled and compressed like the server's.
import { createServer, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { webFileFor } from './server.mjs';

const WEB = join(dirname(fileURLToPath(import.meta.url)), '..', 'web');
const TYPES = {
  html: 'text/html; charset=utf-8', js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml', png: 'image/png', json: 'application/json',
};
const COMPRESSED = /^(text\/|application\/json|image\/svg)/;

/** Start the front for `upstream` (the server's URL); returns { url, stop, served }. */
export async function startWireProxy(upstream) {
  const up = new URL(upstream);
  const served = []; // [path, bytes sent] of web/ files
  const server = createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = req.method === 'GET' ? webFileFor(path) : null;
    let body = null;
    if (file) {
      try { body = await readFile(join(WEB, file)); } catch { body = null; }
    }
    if (!body) return pass(req, res);
    // the server's headers for the same path (CSP, caching, nosniff), not its body
    // (asked with the browser's Host: the CSP names the host the page came from)
    const headers = await upstreamHeaders(req.url, req.headers.host);
    for (const h of ['content-encoding', 'content-length', 'etag', 'transfer-encoding', 'connection', 'keep-alive']) delete headers[h];
    headers['content-type'] = TYPES[file.split('.').pop()] || headers['content-type'] || 'application/octet-stream';
    if (!headers['cache-control']) headers['cache-control'] = 'no-cache';
    if (COMPRESSED.test(headers['content-type']) && /\bgzip\b/.test(req.headers['accept-encoding'] || '')) {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
      headers.vary = 'accept-encoding';
    }
    headers['content-length'] = String(body.length);
    served.push([path, body.length]);
    res.writeHead(200, headers);
    res.end(body);
  });

  function upstreamHeaders(path, host) {
    return new Promise((resolve) => {
      const ask = httpRequest({ host: up.hostname, port: up.port, method: 'GET', path, headers: { host, 'accept-encoding': 'identity' } }, (answer) => {
        answer.resume();
        resolve(answer.statusCode === 200 ? { ...answer.headers } : {});
      });
      ask.on('error', () => resolve({}));
      ask.end();
    });
  }

  function pass(req, res) {
    const out = httpRequest({
      host: up.hostname, port: up.port, method: req.method, path: req.url,
      headers: { ...req.headers, host: up.host },
    }, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(out);
  }

  // WebSocket: hand the raw bytes both ways after replaying the upgrade request
  server.on('upgrade', (req, socket, head) => {
    const target = connect(Number(up.port), up.hostname, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i];
        lines.push(`${name}: ${name.toLowerCase() === 'host' ? up.host : req.rawHeaders[i + 1]}`);
      }
      target.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (head && head.length) target.write(head);
      socket.pipe(target);
      target.pipe(socket);
    });
    const end = () => { socket.destroy(); target.destroy(); };
    target.on('error', end);
    socket.on('error', end);
    target.on('close', end);
    socket.on('close', end);
  });

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    served,
    /** `link` (a URL on the server) on this front instead. */
    rebase: (link) => link.replace(up.origin, url),
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}
