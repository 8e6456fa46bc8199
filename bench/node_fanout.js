// node_fanout.js - channels' fan-out as a plain Node.js net server, in the
// seed's style, for bench/run.py to measure jsonproto's channels against.
//
// Newline-delimited JSON, the seed's per-socket logic (string buffer,
// indexOf('\n') loop, JSON.parse in try/catch, one socket.write per
// message), and the fan-out written the simple way: a Set of sockets per
// channel, each publication stringified once and written to every one.
//   {"type":"SUBSCRIBE","channel":NAME}            -> {"status":"OK","channel":NAME}
//   {"type":"UNSUBSCRIBE","channel":NAME}          -> {"status":"OK","channel":NAME}
//   {"type":"PUBLISH","channel":NAME,"data":VALUE} -> {"status":"OK","channel":NAME},
//       and every subscriber gets {"type":"PUBLICATION","channel":NAME,"data":VALUE}
// No limits of any kind: no bound on what a slow subscriber holds, no
// timeouts, no validation of channel names.
// Usage: node node_fanout.js PORT      (binds 127.0.0.1, default backlog 511)
'use strict';
const net = require('net');

const port = parseInt(process.argv[2], 10);
const channels = new Map();

const server = net.createServer((socket) => {
  let buf = '';
  const subscribed = new Set();
  socket.on('data', (data) => {
    buf += data.toString();
    while (buf.indexOf('\n') !== -1) {
      const idx = buf.indexOf('\n');
      const message = buf.substring(0, idx);
      buf = buf.substring(idx + 1);
      try {
        const req = JSON.parse(message);
        if (req.type === 'SUBSCRIBE') {
          if (!channels.has(req.channel)) channels.set(req.channel, new Set());
          channels.get(req.channel).add(socket);
          subscribed.add(req.channel);
          socket.write(JSON.stringify({ status: 'OK', channel: req.channel }) + '\n');
        } else if (req.type === 'UNSUBSCRIBE') {
          const subscribers = channels.get(req.channel);
          if (subscribers) subscribers.delete(socket);
          subscribed.delete(req.channel);
          socket.write(JSON.stringify({ status: 'OK', channel: req.channel }) + '\n');
        } else if (req.type === 'PUBLISH') {
          const line = JSON.stringify({ type: 'PUBLICATION', channel: req.channel, data: req.data }) + '\n';
          for (const subscriber of channels.get(req.channel) || []) {
            subscriber.write(line);
          }
          socket.write(JSON.stringify({ status: 'OK', channel: req.channel }) + '\n');
        } else {
          socket.write(JSON.stringify({ status: 'ERROR', message: 'Unknown type' }) + '\n');
        }
      } catch (e) {
        socket.write(JSON.stringify({ status: 'ERROR', message: 'Invalid JSON' }) + '\n');
      }
    }
  });
  socket.on('close', () => {
    for (const channel of subscribed) {
      const subscribers = channels.get(channel);
      if (subscribers) subscribers.delete(socket);
    }
  });
  socket.on('error', () => {});
});

server.listen(port, '127.0.0.1', () => {
  process.stderr.write(`node_fanout listening on 127.0.0.1:${port} (node ${process.version})\n`);
});
