/**
 * The WebSocket subprotocol of wsproof v1 (spec section "Opening handshake").
 * @type {'wsproof.v1'}
 */
export declare const SUBPROTOCOL: 'wsproof.v1';
/**
 * The closed list of signature algorithms (spec section "Algorithms"),
 * compared exactly and case-sensitively.
 * @type {readonly ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA']}
 */
export declare const ALGORITHMS: readonly ['ES256', 'ES384', 'ES512', 'RS256', 'PS256', 'EdDSA'];
export type ErrorInfo = {
    readonly close: number;
    readonly retryable: boolean;
    readonly reason: string;
};
/**
 * The spec's error table (section "Errors"), for the codes that are sent in a
 * Close frame: the WebSocket close code, whether a client may reconnect (with
 * backoff), and the fixed reason text.
 * @type {Readonly<Record<string, ErrorInfo>>}
 */
export declare const ERRORS: Readonly<Record<string, ErrorInfo>>;
/**
 * A wsproof failure. `code` is a code of the spec's error table, or null for
 * a closure by the server whose close code stands for several codes (4003) or
 * for none, and for transport failures that have no code. `closeCode` is the
 * WebSocket close code sent or received (null when there was none), and
 * `retryable` tells keep() and applications whether reconnecting may help.
 * `remote` is true when the server ended the socket. The message is built
 * from fixed texts only: it never contains peer input.
 */
export declare class ProtocolError extends Error {
    /** @type {string|null} */
    code: string | null;
    /** @type {number|null} */
    closeCode: number | null;
    /** @type {boolean} */
    retryable: boolean;
    /** @type {string|null} the fixed reason text of the code's row, if it has one */
    reason: string | null;
    /** @type {boolean} */
    remote: boolean;
    /**
     * @param {string|null} code error code of the spec's table, or null
     * @param {string} detail fixed text for logs; never peer input
     * @param {{closeCode?: number|null, retryable?: boolean, remote?: boolean, cause?: unknown}} [opts]
     */
    constructor(code: string | null, detail: string, opts?: {
        closeCode?: number | null;
        retryable?: boolean;
        remote?: boolean;
        cause?: unknown;
    });
}
/**
 * The reason text a party in diagnostic mode sends with `code` (spec section
 * "Diagnostic reasons"): the code's reason text, a space and the code in
 * brackets, as in "authentication failed [unknown_key]". For conformance
 * tests only: it tells apart the failures that share close code 4003.
 * @param {string} code a code of ERRORS
 * @returns {string}
 */
export declare function diagnosticReason(code: string): string;
/**
 * Whether a client may reconnect, with backoff, after the server ended the
 * socket with the WebSocket close code `code` (spec section "Retry"): the
 * codes of the error table whose Retry column says yes (4007 to 4010 but
 * 4011, 4029, 4050), 1001, 1006 and 1011 to 1014. Every other code is
 * terminal: 1000, 1005 (a Close frame without a code), the authentication
 * failures (4003), session_revoked (4011) and codes outside the table,
 * including unknown 4xxx codes.
 * @param {number} code
 * @returns {boolean}
 */
export declare function closeRetryable(code: number): boolean;
/**
 * The error code whose close code is `code`, or null when it belongs to no
 * code or to several (4003, shared by every authentication failure so that
 * the server does not reveal which check failed).
 * @param {number} code
 * @returns {string|null}
 */
export declare function codeForClose(code: number): string | null;
export type PinnedKey = {
    kid: string;
    alg: string;
    key: CryptoKey | null;
    modulusBytes: number;
};
/**
 * A pinned server key set, validated and imported.
 * @typedef {{kid: string, alg: string, key: CryptoKey|null, modulusBytes: number}} PinnedKey
 */
declare class PinnedKeys {
    keys: Map<string, PinnedKey>;
    /** @param {Map<string, PinnedKey>} keys */
    constructor(keys: Map<string, PinnedKey>);
}
export type ServerKeys = string | {
    keys: object[];
} | PinnedKeys;
/**
 * A pinned server key set: a JWK Set as JSON text, the parsed object, or what
 * loadServerKeys returned for one.
 * @typedef {string | {keys: object[]} | PinnedKeys} ServerKeys
 */
/**
 * Loads a pinned server key set under the load-time rules (the ones Go's
 * keys.ParsePublicSet applies: checkJwk for each key, kids unique even under
 * ASCII case folding, one key under one kid). Accepts the set as
 * a JSON text (checked as strict JSON) or as an object, or a set this function
 * returned. Keys of an algorithm the platform's WebCrypto lacks (EdDSA on old
 * browsers) load, but a challenge signed by one fails with internal_error.
 * @param {ServerKeys} set
 * @returns {Promise<PinnedKeys>}
 * @throws {ProtocolError} code bad_key
 */
export declare function loadServerKeys(set: ServerKeys): Promise<PinnedKeys>;
export type KeyPair = {
    alg: string;
    privateKey: CryptoKey;
    publicKey: CryptoKey;
};
/**
 * A client key pair: the algorithm registered for it and its WebCrypto keys.
 * @typedef {{alg: string, privateKey: CryptoKey, publicKey: CryptoKey}} KeyPair
 */
/**
 * The algorithms this platform's WebCrypto can sign and verify with. Probes
 * Ed25519 once; every other algorithm is in WebCrypto's baseline.
 * @returns {Promise<string[]>}
 */
export declare function supportedAlgorithms(): Promise<string[]>;
/**
 * Generates a client key pair for alg. The private key is non-extractable
 * unless extractable is set: script can then sign with it but never read it,
 * which is what the spec's browser profile relies on. RSA keys have a modulus
 * of modulusLength bits (2048 to 4096) and exponent 65537.
 * @param {string} alg one of ALGORITHMS
 * @param {{extractable?: boolean, modulusLength?: number}} [opts]
 * @returns {Promise<KeyPair>}
 */
export declare function generateKey(alg: string, { extractable, modulusLength }?: {
    extractable?: boolean;
    modulusLength?: number;
}): Promise<KeyPair>;
/**
 * Imports a private JWK as a client key pair, under the member and key rules
 * of spec section "Load-time rules" that Go's keys.ParseJWK applies. jwk.alg
 * is required (one key, one algorithm) and must match the key type and
 * curve; every key member is canonical base64url; RSA keys have a modulus of
 * 2048 to 4096 bits without the ROCA fingerprint, exponent 65537 and all of
 * d, p, q, dp, dq, qi, consistent; key_ops, if present, is ["sign"] or
 * ["sign","verify"]; and the private key must match the public key.
 * @param {Record<string, unknown>} privateJwk
 * @param {{extractable?: boolean}} [opts]
 * @returns {Promise<KeyPair>}
 * @throws {ProtocolError} code bad_key
 */
export declare function importKey(privateJwk: Record<string, unknown>, { extractable }?: {
    extractable?: boolean;
}): Promise<KeyPair>;
/**
 * The RFC 7638 SHA-256 thumbprint of a public JWK, in base64url: the hash of
 * its required members in lexicographic order (spec section "Claims").
 * @param {Record<string, unknown>} jwk
 * @returns {Promise<string>}
 */
export declare function thumbprint(jwk: Record<string, unknown>): Promise<string>;
/**
 * The public JWK of a key pair, as the server's registry takes it
 * (`wsproof keys add --jwk '...'`): the key members, alg, use "sig" and the
 * RFC 7638 thumbprint as kid.
 * @param {KeyPair} keyPair
 * @returns {Promise<Record<string, string>>}
 */
export declare function publicJwk(keyPair: KeyPair): Promise<Record<string, string>>;
/**
 * Stores a key pair in IndexedDB under name, replacing any previous one.
 * Non-extractable keys are stored as CryptoKey objects and stay
 * non-extractable. Browsers only.
 * @param {string} name
 * @param {KeyPair} keyPair
 * @returns {Promise<void>}
 */
export declare function saveKey(name: string, keyPair: KeyPair): Promise<void>;
/**
 * Loads the key pair stored under name, or null when there is none.
 * Browsers only.
 * @param {string} name
 * @returns {Promise<KeyPair|null>}
 */
export declare function loadKey(name: string): Promise<KeyPair | null>;
/**
 * Deletes the key pair stored under name, if any. Browsers only.
 * @param {string} name
 * @returns {Promise<void>}
 */
export declare function deleteKey(name: string): Promise<void>;
export type ChallengeOptions = {
    /**
     * the client key's id in the server's registry
     */
    keyId: string;
    /**
     * the client key
     */
    keyPair: KeyPair;
    /**
     * the pinned server key set (JWK Set JSON or object, or loadServerKeys' result)
     */
    serverKeys: ServerKeys;
    /**
     * the expected server identity: the challenge's iss must equal it (step 10)
     */
    serverIdentity: string;
    /**
     * whether the connection is TLS; default: whether exporter is set. On a TLS
     * connection a challenge whose cb is "none" is refused with channel_binding_required unless allowUnbound
     */
    tls?: boolean;
    /**
     * accept cb "none" on a TLS connection (a server behind a
     * TLS-terminating proxy, or the browser profile)
     */
    allowUnbound?: boolean;
    /**
     * seconds of clock disagreement allowed
     */
    clockSkew?: number;
    /**
     * the connection's RFC 9266 tls-exporter value, or null (no TLS, TLS 1.2, browsers)
     */
    exporter?: Uint8Array | null;
    /**
     * for a re-challenge: the live session's socketID (step 14)
     */
    sessionSid?: string;
    /**
     * for a re-challenge: the live session token's exp, a NumericDate (step 15)
     */
    sessionExp?: number;
    /**
     * the current time in milliseconds; default Date.now()
     */
    now?: number;
};
export type VerifiedChallenge = {
    /**
     * the response message to send
     */
    response: string;
    /**
     * the challenge's protected header
     */
    header: {
        alg: string;
        kid: string;
        typ: string;
    };
    claims: {
        iss: string;
        sid: string;
        nonce: string;
        iat: number;
        exp: number;
        algs: string[];
        cb: string;
    };
    /**
     * the pinned key that signed the challenge
     */
    serverKeyId: string;
    /**
     * whether the response carries a tls-exporter binding
     */
    channelBound: boolean;
};
/**
 * Runs spec section "Client: verifying a challenge" (steps 1 to 15, in
 * order) on the text message challenge and returns the signed response. The
 * first failing step's code is thrown as a ProtocolError.
 * @param {string} challenge
 * @param {ChallengeOptions} opts
 * @returns {Promise<VerifiedChallenge>}
 */
export declare function verifyChallenge(challenge: string, opts: ChallengeOptions): Promise<VerifiedChallenge>;
export type Accept = {
    token: string;
    sub: string;
    groups: string[];
    exp: number;
    maxSize: number;
};
/**
 * @typedef {{token: string, sub: string, groups: string[], exp: number, maxSize: number}} Accept
 */
/**
 * Runs spec section "Client: processing an accept" on the text message accept
 * (steps 1 to 3). Unknown members are ignored; the token stays opaque.
 * `maxSize` is the accept's max_size: the largest application message the
 * server accepts, 1 to 2^30 octets (REQUIRED; written as a NumericDate).
 * @param {string} accept
 * @param {{clockSkew?: number, now?: number}} [opts] skew in seconds, now in milliseconds
 * @returns {Accept}
 */
export declare function processAccept(accept: string, { clockSkew, now }?: {
    clockSkew?: number;
    now?: number;
}): Accept;
/**
 * The server identity a client expects by default when it dials url (spec
 * section "Server identity"): the ws:// or wss:// URL with its scheme and
 * host in lowercase, an IPv6 address in brackets, the port only when it is not
 * the scheme's default (80 for ws, 443 for wss), and the path as it appears in
 * the URL, or "/" when there is none; no query or fragment. For example
 * `wss://Plant-3.example:443/ws?region=eu` gives `wss://plant-3.example/ws`.
 * It is the identity protocol.IdentityFromURL computes for the same URL.
 *
 * Throws a TypeError for a URL with user information or a fragment
 * (credentials never travel in a URL), one that is not ws:// or wss://, and
 * one whose identity would not name the endpoint actually dialed, because the
 * WebSocket layer (the WHATWG URL parser) reads its host, port or path
 * otherwise: a non-ASCII host, IPv4 shorthand such as 127.1, an IPv6 address
 * not in its shortest form, a port with leading zeros or above 65535, "." or
 * ".." path segments, or characters the two parsers escape differently. Such
 * a server's identity must be given as serverIdentity.
 * @param {string} url
 * @returns {string}
 */
export declare function identityFromURL(url: string): string;
/**
 * Whether a client may dial url without being configured to allow plaintext
 * (spec section "Opening handshake"): wss:// always; ws:// only to a loopback
 * host (the host localhost, an address in 127.0.0.0/8, or ::1), where no
 * network carries the unencrypted session. It is protocol.PlaintextAllowed.
 * @param {string} url
 * @returns {boolean}
 */
export declare function plaintextAllowed(url: string): boolean;
/**
 * The RFC 9266 tls-exporter value of a `ws` package socket: 32 octets
 * exported with the label "EXPORTER-Channel-Binding" and no context, when the
 * socket's TLS version is 1.3; null otherwise (no TLS, TLS 1.2, or not a
 * `ws` socket, as in browsers, which expose no exporter).
 * @param {object} ws
 * @returns {Promise<Uint8Array|null>}
 */
export declare function nodeChannelBinding(ws: object): Promise<Uint8Array | null>;
export type State = 'AWAIT_CHALLENGE' | 'AWAIT_ACCEPT' | 'OPEN' | 'REFRESHING' | 'CLOSED';
export type Session = {
    /**
     * the socketID (sid) the server assigned
     */
    socketId: string;
    /**
     * the subject of the key's registry entry
     */
    subject: string;
    /**
     * the groups of the key's registry entry
     */
    groups: string[];
    /**
     * when the session token expires
     */
    expiry: Date;
    /**
     * whether the last response carried a tls-exporter binding
     */
    channelBound: boolean;
    /**
     * the session token, opaque to the client
     */
    token: string;
    /**
     * the pinned server key that signed the last challenge
     */
    serverKeyId: string;
    /**
     * the accept's max_size: the largest application message the server accepts, in octets
     */
    maxSize: number;
};
export type Action = {
    type: 'send';
    text: boolean;
    data: string | Uint8Array;
} | {
    type: 'ping';
} | {
    type: 'deliver';
    data: Uint8Array;
} | {
    type: 'accepted';
    session: Session;
    refresh: boolean;
} | {
    type: 'timer';
    at: number | null;
} | CloseAction;
export type CloseAction = {
    type: 'close';
    code: string | null;
    closeCode: number | null;
    reason: string | null;
    retry: boolean;
    peerCode: number | null;
    error: ProtocolError | null;
};
export type MachineConfig = {
    /**
     * the client key's id in the server's registry
     */
    keyId: string;
    /**
     * the client key
     */
    keyPair: KeyPair;
    /**
     * the pinned server key set, as loadServerKeys returns it
     */
    serverKeys: PinnedKeys;
    /**
     * the expected server identity, 1 to 256 octets
     */
    serverIdentity: string;
    /**
     * whether the connection is TLS (true also when exporter is set)
     */
    tls?: boolean;
    /**
     * the connection's RFC 9266 tls-exporter value (TLS 1.3 only)
     */
    exporter?: Uint8Array | null;
    /**
     * accept challenges without channel binding (cb "none") on a TLS connection
     */
    allowUnbound?: boolean;
    /**
     * seconds of clock disagreement allowed
     */
    clockSkew?: number;
    /**
     * milliseconds from the upgrade to the accept
     */
    handshakeTimeout?: number;
    /**
     * an earlier absolute deadline (milliseconds) for the handshake, for a
     * transport whose own bound started before the upgrade
     */
    handshakeDeadline?: number;
    /**
     * milliseconds between Pings in OPEN and REFRESHING; nothing received for
     * twice that closes with keepalive_timeout. 0 turns rows C13 and C14 off, for transports that cannot send
     * Pings or see control frames (browsers)
     */
    pingInterval?: number;
    /**
     * the largest application message accepted, in octets (1 to 2^30)
     */
    maxMessageSize?: number;
    /**
     * called at 'challenge', 'verified', 'response',
     * 'accept' and 'refresh', for UIs; its exceptions are ignored
     */
    onStep?: (step: string, detail: object) => void;
    /**
     * send diagnosticReason(code) instead of the plain reason text in
     * every Close frame for a failure, for conformance tests only (spec section "Diagnostic reasons")
     */
    diagnosticReasons?: boolean;
};
/**
 * The client's side of one socket from the upgrade to the close: the state
 * machine of spec section "Client state machine", rows C3 to C29, as
 * protocol.ClientConn implements it in Go. It performs no I/O, arms no timer
 * and reads no clock: the transport reports what happens on the socket, each
 * time with `now`, and carries out the returned actions in order.
 *
 * Time is in milliseconds since 1970-01-01T00:00:00Z, as Date.now() gives it
 * (the spec's *now* for NumericDate comparisons is that divided by 1000 and
 * rounded down). Per the spec's Time rule, every input first applies every
 * timed row due at `now` (the handshake deadline, the keepalive timeout, a
 * Ping), in table order.
 *
 * Verifying a challenge and signing the response use WebCrypto, which is
 * asynchronous: message() returns a Promise of the actions when the message
 * needs it, and also while an earlier message is still being processed, so
 * that messages are processed strictly in arrival order (a message queued
 * behind a challenge waits for it). Every other input is applied at once,
 * even while a message is being verified: it is about the connection at that
 * instant (a deadline, a Pong, the application's send or close, the peer's
 * Close frame). If such an input ends the socket, the pending message's
 * Promise resolves to no actions.
 */
export declare class ClientMachine {
    #private;
    /**
     * Starts the client's side of a socket whose upgrade has just succeeded
     * (state AWAIT_CHALLENGE, rows C3): the handshake must end by now plus
     * handshakeTimeout, or by handshakeDeadline if that is earlier. The timer
     * the transport must arm is `timerAt`.
     * @param {MachineConfig} config
     * @param {number} now milliseconds
     */
    constructor(config: MachineConfig, now: number);
    /** The current state. @returns {State} */
    get state(): State;
    /** The session of the most recent accept, or null before the first. @returns {Session|null} */
    get session(): Session | null;
    /** The close action that ended the socket, or null while it has not ended. @returns {CloseAction|null} */
    get end(): CloseAction | null;
    /** When the transport must call timer() next (milliseconds), or null for never. @returns {number|null} */
    get timerAt(): number | null;
    /** Whether a message is being processed asynchronously. @returns {boolean} */
    get busy(): boolean;
    /**
     * A WebSocket data message arrived (rows C5 to C21). The rows apply, in
     * order, the size limit of the state and type, then the type, then the
     * first octet, which tells an accept ('{') from a challenge. data is the
     * text (a string, or its UTF-8 octets) or the binary payload (a Uint8Array
     * or ArrayBuffer).
     * @param {number} now milliseconds
     * @param {boolean} isText
     * @param {string|Uint8Array|ArrayBuffer} data
     * @returns {Action[]|Promise<Action[]>}
     */
    message(now: number, isText: boolean, data: string | Uint8Array | ArrayBuffer): Action[] | Promise<Action[]>;
    /**
     * Time passed (the timer armed by a timer action fired): applies whatever
     * is due at now (rows C4, C13, C14).
     * @param {number} now milliseconds
     * @returns {Action[]}
     */
    timer(now: number): Action[];
    /**
     * A Ping or Pong frame arrived (row C22): the peer is alive.
     * @param {number} now milliseconds
     * @returns {Action[]}
     */
    pong(now: number): Action[];
    /**
     * The application sends data as one application message (rows C23, C24).
     * Throws, leaving the socket as it is, an Error when the socket is not
     * OPEN or REFRESHING, and a RangeError when data is longer than the
     * accept's max_size; either error's `actions` holds the actions of the
     * timed rows the input applied, which the transport must still carry out.
     * @param {number} now milliseconds
     * @param {Uint8Array} data
     * @returns {Action[]}
     */
    send(now: number, data: Uint8Array): Action[];
    /**
     * A write did not complete within the transport's write deadline: the
     * server is not reading (row C25, slow_reader, retryable).
     * @param {number} now milliseconds
     * @returns {Action[]}
     */
    writeTimeout(now: number): Action[];
    /**
     * The application closes the socket (row C26): close with 1000, and do not
     * reconnect.
     * @param {number} now milliseconds
     * @returns {Action[]}
     */
    close(now: number): Action[];
    /**
     * The server's Close frame arrived with close code `code` (1005 for none)
     * (row C27): the socket ends, and the action's retry follows spec section
     * "Retry" for that code.
     * @param {number} now milliseconds
     * @param {number} code
     * @returns {Action[]}
     */
    peerClose(now: number, code: number): Action[];
    /**
     * The connection ended without a Close frame (row C28): retryable, as
     * 1006.
     * @param {number} now milliseconds
     * @returns {Action[]}
     */
    lost(now: number): Action[];
}
export type CloseInfo = {
    /**
     * the close code: the one the client sent when it closed for a failure, else the
     * one the server sent (1005: none; 1006: the connection was lost)
     */
    code: number | null;
    /**
     * the reason text of that Close frame; peer input when the server closed
     */
    reason: string;
    /**
     * whether a client may reconnect (with backoff): spec section "Retry"
     */
    retryable: boolean;
    /**
     * why the socket ended, null after a normal closure
     */
    error?: ProtocolError | null;
};
export type ConnectOptions = {
    /**
     * the client key's id in the server's registry (required)
     */
    keyId: string;
    /**
     * the client key (required)
     */
    keyPair: KeyPair;
    /**
     * the pinned server key set, a JWK Set as JSON text or object (required)
     */
    serverKeys: ServerKeys;
    /**
     * the server identity every challenge's iss must equal; default: the URL dialed,
     * normalized as identityFromURL says (spec section "Server identity")
     */
    serverIdentity?: string;
    /**
     * Node: accept challenges without channel binding (cb "none") on a wss://
     * connection, for a server behind a proxy that terminates TLS, or TLS 1.2. Without it such a server is refused
     * with channel_binding_required: whatever terminates the client's TLS could otherwise relay the handshake and
     * use the session. Browsers always accept them (the browser profile)
     */
    allowUnbound?: boolean;
    /**
     * allow ws:// to a host that is not loopback (testing only: the
     * session token and every message then cross the network in the clear)
     */
    insecurePlaintext?: boolean;
    /**
     * the WebSocket class; in Node, the `ws` package's
     */
    WebSocket?: new (url: string, protocols: string[], options?: object) => object;
    /**
     * Node: the connection's
     * tls-exporter value
     */
    channelBinding?: (ws: object) => Promise<Uint8Array | null>;
    /**
     * seconds of clock disagreement allowed when judging challenges and accepts
     */
    clockSkew?: number;
    /**
     * milliseconds from the start to the accept
     */
    handshakeTimeout?: number;
    /**
     * Node: milliseconds between WebSocket Pings on an authenticated socket;
     * nothing received for twice that closes with keepalive_timeout (retryable). 0 turns it off. Browsers cannot
     * send Pings or see Pongs: there the server's keepalive detects a dead client
     */
    pingInterval?: number;
    /**
     * milliseconds that queued outgoing data may make no progress before the
     * client closes with slow_reader (retryable); 0 turns it off
     */
    writeTimeout?: number;
    /**
     * largest application message accepted, in octets
     */
    maxMessageSize?: number;
    /**
     * Node only: the Origin header the `ws` package sends
     */
    origin?: string;
    /**
     * Node only: further options for the `ws` constructor (for example ca, checkServerIdentity)
     */
    wsOptions?: object;
    /**
     * called at 'open', 'challenge', 'verified', 'response', 'accept', 'refresh'
     */
    onStep?: (step: string, detail: object) => void;
    /**
     * name the spec code in the reason of every Close frame the client
     * sends for a failure, for conformance tests only (spec section "Diagnostic reasons")
     */
    diagnosticReasons?: boolean;
    /**
     * the clock, in milliseconds
     */
    now?: () => number;
};
export type ConnectionEvents = {
    /**
     * an application
     * message, in the order the server sent them
     */
    message: {
        type: 'message';
        data: Uint8Array;
        detail: Uint8Array;
        timeStamp: number;
    };
    /**
     * a refresh succeeded
     */
    refresh: {
        type: 'refresh';
        session: Session;
        detail: Session;
        timeStamp: number;
    };
    /**
     * the socket has closed
     */
    close: CloseInfo & {
        type: 'close';
        detail: CloseInfo;
        timeStamp: number;
    };
};
export type Listener<E> = ((event: E) => void) | {
    handleEvent(event: E): void;
};
/**
 * The events of a Connection: plain objects with the fields below, plus
 * `detail` (the same data, for CustomEvent habits) and `timeStamp`.
 * @typedef {object} ConnectionEvents
 * @property {{type: 'message', data: Uint8Array, detail: Uint8Array, timeStamp: number}} message an application
 *   message, in the order the server sent them
 * @property {{type: 'refresh', session: Session, detail: Session, timeStamp: number}} refresh a refresh succeeded
 * @property {CloseInfo & {type: 'close', detail: CloseInfo, timeStamp: number}} close the socket has closed
 */
/**
 * A listener: a function, or an object with handleEvent, as EventTarget takes them.
 * @template E
 * @typedef {((event: E) => void) | {handleEvent(event: E): void}} Listener
 */
/**
 * An authenticated wsproof socket. Application data travels in binary
 * messages; re-challenges are answered inside, so `session` changes over time
 * while messages keep flowing both ways.
 *
 * Events (addEventListener): 'message' with event.data a Uint8Array, in the
 * order the server sent them (messages that arrive before the first
 * 'message' listener is added are held for it); 'refresh' with event.session
 * after each successful refresh; 'close' with event.code, event.reason,
 * event.retryable and event.error, once, when the socket has closed.
 *
 * The class is exported for its type and for instanceof; connect() and keep()
 * make its instances.
 */
export declare class Connection {
    #private;
    /**
     * Resolves once, when the socket has closed; never rejects.
     * @type {Promise<CloseInfo>}
     */
    closed: Promise<CloseInfo>;
    /** The session of the most recent accept. @returns {Session} */
    get session(): Session;
    /** Octets queued by send and not yet written to the network. @returns {number} */
    get bufferedAmount(): number;
    /**
     * Sends one binary application message: a string is sent as its UTF-8
     * octets. The data is copied. Throws a RangeError, leaving the socket
     * open, when the message is longer than the server accepts (the accept's
     * max_size, session.maxSize), and an Error when the socket is no longer
     * open.
     * @param {string|Uint8Array|ArrayBuffer} data
     */
    send(data: string | Uint8Array | ArrayBuffer): void;
    /**
     * Closes the socket with code (1000, or 3000 to 4999) and no reason. The
     * 'close' event and the closed promise follow when the server has answered.
     * @param {number} [code=1000]
     */
    close(code?: number): void;
    /**
     * @template {keyof ConnectionEvents} K
     * @param {K} type
     * @param {Listener<ConnectionEvents[K]>} listener
     */
    addEventListener<K extends keyof ConnectionEvents>(type: K, listener: Listener<ConnectionEvents[K]>): void;
    /**
     * @template {keyof ConnectionEvents} K
     * @param {K} type
     * @param {Listener<ConnectionEvents[K]>} listener
     */
    removeEventListener<K extends keyof ConnectionEvents>(type: K, listener: Listener<ConnectionEvents[K]>): void;
}
/**
 * Opens a wsproof socket to url and authenticates with options.keyPair. It
 * resolves once the server's accept has arrived, with a Connection whose
 * re-challenges are answered inside. It rejects with a ProtocolError: a
 * failure the client detected (after closing the socket with that code's
 * close code and reason), a closure by the server (remote, with its close
 * code: 4003 for every authentication failure), the handshake timeout
 * (handshake_timeout), an upgrade the server refused (rate_limited,
 * origin_not_allowed, subprotocol_required when the `ws` package reports the
 * HTTP status), a pinned set that does not load (bad_key), or a broken
 * connection (closeCode 1006, retryable). Invalid options reject with a
 * TypeError or RangeError, and so does ws:// to a host that is not loopback
 * unless options.insecurePlaintext is set.
 * @param {string} url ws:// or wss://, without credentials
 * @param {ConnectOptions} options
 * @returns {Promise<Connection>}
 */
export declare function connect(url: string, options: ConnectOptions): Promise<Connection>;
export type FailureInfo = {
    /**
     * the spec's error code, or null when the close code stands for several (4003) or
     * none (a broken connection, 1006; an HTTP status of no code; an error that is not a ProtocolError)
     */
    code: string | null;
    /**
     * the WebSocket close code sent or received, or null (an HTTP refusal)
     */
    closeCode: number | null;
    /**
     * whether spec section "Retry" allows connecting again
     */
    retryable: boolean;
    /**
     * whether keep will connect again (after delay), which it does exactly when the
     * failure is retryable, unless stop() is called
     */
    willRetry: boolean;
    /**
     * milliseconds until the next attempt, or null when keep gives up
     */
    delay: number | null;
    /**
     * why; the same object done rejects with when keep gives up
     */
    error: ProtocolError | Error;
};
export type FailureEvent = FailureInfo & {
    type: 'failure';
    detail: FailureInfo;
    timeStamp: number;
};
export type Keeper = {
    /**
     * stops reconnecting and closes the current connection (1000); done then resolves
     * with {stopped: true}
     */
    stop: () => void;
    /**
     * resolves when keep ends without a failure: after stop()
     * ({stopped: true}), or when the application closed its Connection or the server closed it normally (1000), with
     * that Connection's CloseInfo. Rejects when keep gives up on a terminal failure, with the error: a ProtocolError
     * (its code, closeCode, retryable false, and cause when there is one), or whatever onConnection threw, or the
     * TypeError or RangeError of invalid options. Await it or catch it: an ignored rejection is an unhandled one
     */
    done: Promise<{
        stopped: true;
    } | CloseInfo>;
    /**
     * listens for 'failure'
     * events, each failure as it happens, retryable or not
     */
    addEventListener: (type: 'failure', listener: Listener<FailureEvent>) => void;
    removeEventListener: (type: 'failure', listener: Listener<FailureEvent>) => void;
};
/**
 * A failure that keep() reports with a 'failure' event: one for each
 * connection attempt that failed and each connection that ended for a
 * reason other than the application's close, the server's normal close or
 * stop(). The fields are those of `error` and of keep's decision.
 * @typedef {object} FailureInfo
 * @property {string|null} code the spec's error code, or null when the close code stands for several (4003) or
 *   none (a broken connection, 1006; an HTTP status of no code; an error that is not a ProtocolError)
 * @property {number|null} closeCode the WebSocket close code sent or received, or null (an HTTP refusal)
 * @property {boolean} retryable whether spec section "Retry" allows connecting again
 * @property {boolean} willRetry whether keep will connect again (after delay), which it does exactly when the
 *   failure is retryable, unless stop() is called
 * @property {number|null} delay milliseconds until the next attempt, or null when keep gives up
 * @property {ProtocolError|Error} error why; the same object done rejects with when keep gives up
 */
/**
 * A 'failure' event of keep(): the FailureInfo, again as `detail` (for
 * CustomEvent habits), and `timeStamp`, Date.now() when it happened.
 * @typedef {FailureInfo & {type: 'failure', detail: FailureInfo, timeStamp: number}} FailureEvent
 */
/**
 * What keep() returns.
 * @typedef {object} Keeper
 * @property {() => void} stop stops reconnecting and closes the current connection (1000); done then resolves
 *   with {stopped: true}
 * @property {Promise<{stopped: true} | CloseInfo>} done resolves when keep ends without a failure: after stop()
 *   ({stopped: true}), or when the application closed its Connection or the server closed it normally (1000), with
 *   that Connection's CloseInfo. Rejects when keep gives up on a terminal failure, with the error: a ProtocolError
 *   (its code, closeCode, retryable false, and cause when there is one), or whatever onConnection threw, or the
 *   TypeError or RangeError of invalid options. Await it or catch it: an ignored rejection is an unhandled one
 * @property {(type: 'failure', listener: Listener<FailureEvent>) => void} addEventListener listens for 'failure'
 *   events, each failure as it happens, retryable or not
 * @property {(type: 'failure', listener: Listener<FailureEvent>) => void} removeEventListener
 */
/**
 * Keeps a connection to url up: connects, hands each Connection to
 * onConnection, and when the socket ends in a way spec section "Retry" marks
 * as retryable (handshake_timeout, keepalive_timeout, slow_reader,
 * token_expired, rate_limited, internal_error, 1001 going away, 1006 a broken
 * connection, 1011 to 1014, HTTP 429, 502, 503, 504) waits and connects again.
 * The delay starts at initial milliseconds and doubles up to max, of which
 * the fraction jitter is random; it starts again from initial after a
 * connection that lasted a minute.
 *
 * Every failure is reported, as it happens, to the 'failure' listeners (a
 * FailureEvent: code, close code, whether keep will retry, the error). keep
 * gives up on a terminal failure (for example 4003, 4011, an HTTP 403, an
 * unknown close code, onConnection throwing, invalid options) and done
 * rejects with its error. It ends without a failure, and done resolves, on
 * stop(), when the application closes the Connection itself, and when the
 * server closes it normally (1000).
 * @param {string} url
 * @param {ConnectOptions} options
 * @param {(conn: Connection) => void} onConnection
 * @param {{initial?: number, max?: number, jitter?: number}} [backoff]
 * @returns {Keeper}
 */
export declare function keep(url: string, options: ConnectOptions, onConnection: (conn: Connection) => void, { initial, max, jitter }?: {
    initial?: number;
    max?: number;
    jitter?: number;
}): Keeper;
export {};
