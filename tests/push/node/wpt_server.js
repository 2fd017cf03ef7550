#!/usr/bin/env node
// Thin wrapper around web-push-testing 1.2.2 for the test-suite:
//  * binds 127.0.0.1 (the stock server listens on *:port) and accepts port 0 (ephemeral);
//    prints "Server running on port N" once listening, runs in the foreground (stop = SIGTERM its pid);
//  * records every POST /notify/<clientHash> request (method, headers, body length, status sent);
//    POST /get-requests {"clientHash": "..."} -> {"data": {"requests": [...]}}
//    (stock /get-notifications only returns the decrypted payload strings, no headers);
//  * can inject responses: POST /inject {"clientHash": "...", "status": 429, "headers": {"Retry-After": "7"},
//    "body": "...", "times": 1} -> the next `times` notify requests for that hash get that answer instead
//    (the stock server only ever answers 201 / 400 / 410).
const path = require('path');
const src = path.join(__dirname, 'node_modules', 'web-push-testing', 'src');
const TestingServer = require(path.join(src, 'server.js'));
const {PushApiModel} = require(path.join(src, 'PushApiModel.js'));

const port = parseInt(process.argv[2] || '0', 10);
const host = process.argv[3] || '127.0.0.1';

const model = new PushApiModel();
const server = new TestingServer(model, port);
const app = server._app;
const recorded = {};
const injected = {};

app.use((req, res, next) => {
	const m = /^\/notify\/([^/]+)$/.exec(req.path);
	if (req.method !== 'POST' || !m) {
		return next();
	}

	const hash = m[1];
	const entry = {
		headers: {...req.headers},
		bodyLength: Buffer.isBuffer(req.body) ? req.body.length : null,
		receivedAt: Date.now(),
	};
	// The stock middleware renamed Content-Encoding to X-Content-Encoding; show the original name.
	if (entry.headers['x-content-encoding']) {
		entry.headers['content-encoding'] = entry.headers['x-content-encoding'];
		delete entry.headers['x-content-encoding'];
	}

	(recorded[hash] = recorded[hash] || []).push(entry);
	res.on('finish', () => {
		entry.status = res.statusCode;
	});
	const inj = injected[hash];
	if (inj && inj.times > 0) {
		inj.times -= 1;
		res.status(inj.status).set(inj.headers || {}).send(inj.body || '');
		return;
	}

	next();
});

app.post('/get-requests', (req, res) => {
	res.status(200).send({data: {requests: recorded[req.body.clientHash] || []}});
});

app.post('/inject', (req, res) => {
	const {clientHash, status, headers, body, times} = req.body;
	injected[clientHash] = {status, headers, body, times: times === undefined ? 1 : times};
	res.sendStatus(200);
});

server.setRequestHandlers();
const listener = app.listen(port, host, () => {
	const actual = listener.address().port;
	model.notifyUrl = 'http://' + host + ':' + actual + '/notify/';
	console.log('Server running on port ' + actual);
});
listener.on('error', err => {
	console.error(err);
	process.exit(1);
});
process.on('SIGTERM', () => listener.close(() => process.exit(0)));
