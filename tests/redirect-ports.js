// Preloaded into the seed's own clients (node -r) so that they run unchanged
// against a daemon on a free port: connections to the port numbers named in
// JSONPROTO_PORT_MAP (a JSON object, seed port -> test port) go to the test
// ports instead, on the same host.
'use strict';
const net = require('net');
const ports = JSON.parse(process.env.JSONPROTO_PORT_MAP || '{}');
const connect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function (...args) {
  if (typeof args[0] === 'number' && ports[args[0]]) {
    args[0] = ports[args[0]];
  } else if (args[0] && typeof args[0] === 'object' && ports[args[0].port]) {
    args[0] = Object.assign({}, args[0], { port: ports[args[0].port] });
  }
  return connect.apply(this, args);
};
