package conformance

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/wsproof/wsproof/protocol"
)

// This file is a deliberately small WebSocket (RFC 6455) implementation for
// the probes. Unlike a WebSocket library it will write any frame it is told
// to: unmasked client frames, reserved bits and opcodes, oversized control
// frames, a header declaring a length it never sends. It reads strictly and
// records what the peer gets wrong, so that each probe case can judge the
// peer by what it put on the wire.

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// wsGUID is the key suffix of RFC 6455 section 1.3.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxProbeFrame bounds what the probes read from a peer in one frame and in
// one message: enough for every legitimate wsproof message (an accept is at
// most 16 KiB, an application message 64 KiB by default).
const maxProbeFrame = 1 << 20

// wsAccept is the Sec-WebSocket-Accept value for key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// frame is one WebSocket frame as written or read.
type frame struct {
	fin     bool
	rsv     byte // the three reserved bits, RSV1 = 4
	op      byte
	masked  bool
	payload []byte
	// length, when not negative, is the payload length written in the
	// header instead of len(payload), for frames that lie about their size.
	length int64
}

// wire is one WebSocket connection, in the client role (it masks what it
// writes and expects unmasked frames) or the server role.
type wire struct {
	conn     net.Conn
	r        *bufio.Reader
	client   bool
	exporter []byte // RFC 9266 tls-exporter value, client role over TLS 1.3

	// noPong stops next from answering Pings, as a peer that is gone
	// would: the keepalive cases. Set it only between calls to next.
	noPong bool
	// reportPings makes next return an evPing event for each Ping, after
	// answering it (unless noPong): the keepalive cases time them.
	reportPings bool

	wmu        sync.Mutex
	closeSent  bool
	violations []string    // RFC 6455 rules the peer broke, in the order seen
	pings      []time.Time // when each Ping from the peer arrived
}

func newWire(conn net.Conn, r *bufio.Reader, client bool) *wire {
	if r == nil {
		r = bufio.NewReader(conn)
	}
	return &wire{conn: conn, r: r, client: client}
}

// write writes one frame exactly as f describes it, masked or not whatever
// the role: the framing cases depend on it.
func (w *wire) write(f frame) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return w.writeLocked(f)
}

func (w *wire) writeLocked(f frame) error {
	b := appendFrameHeader(nil, f)
	payload := f.payload
	if f.masked {
		var key [4]byte
		rand.Read(key[:])
		b = append(b, key[:]...)
		payload = make([]byte, len(f.payload))
		for i, c := range f.payload {
			payload[i] = c ^ key[i%4]
		}
	}
	w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := w.conn.Write(append(b, payload...))
	if f.op == opClose && err == nil {
		w.closeSent = true
	}
	return err
}

func appendFrameHeader(b []byte, f frame) []byte {
	b0 := f.rsv<<4 | f.op&0x0f
	if f.fin {
		b0 |= 0x80
	}
	n := f.length
	if n < 0 {
		n = int64(len(f.payload))
	}
	var mask byte
	if f.masked {
		mask = 0x80
	}
	switch {
	case n < 126:
		return append(b, b0, mask|byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, b0, mask|126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, b0, mask|127), uint64(n))
	}
}

// send writes one unfragmented message, masked as the role requires.
func (w *wire) send(op byte, payload []byte) error {
	return w.write(frame{fin: true, op: op, masked: w.client, payload: payload, length: -1})
}

func (w *wire) sendText(s string) error { return w.send(opText, []byte(s)) }

// sendClose sends a Close frame with code and reason, once.
func (w *wire) sendClose(code int, reason string) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.closeSent {
		return nil
	}
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return w.writeLocked(frame{fin: true, op: opClose, masked: w.client, payload: append(p, reason...), length: -1})
}

// writeRaw writes bytes as they are: for frames split across writes.
func (w *wire) writeRaw(b []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := w.conn.Write(b)
	return err
}

func (w *wire) violation(format string, args ...any) {
	w.wmu.Lock()
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
	w.wmu.Unlock()
}

// Pings returns when each Ping from the peer arrived, so far.
func (w *wire) Pings() []time.Time {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return append([]time.Time(nil), w.pings...)
}

// Violations returns the RFC 6455 rules the peer broke so far.
func (w *wire) Violations() []string {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	return append([]string(nil), w.violations...)
}

var errFrameTooLarge = errors.New("frame larger than the probe reads")

// readFrame reads one frame, unmasking it, and records masking violations:
// a server must not mask, a client must (RFC 6455 section 5.1).
func (w *wire) readFrame() (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0x0f, masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.r, b[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.r, b[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > maxProbeFrame {
		w.violation("sent a frame declaring %d bytes", n)
		return frame{}, errFrameTooLarge
	}
	var key [4]byte
	if f.masked {
		if _, err := io.ReadFull(w.r, key[:]); err != nil {
			return frame{}, err
		}
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(w.r, f.payload); err != nil {
		return frame{}, err
	}
	if f.masked {
		for i := range f.payload {
			f.payload[i] ^= key[i%4]
		}
	}
	switch {
	case w.client && f.masked:
		w.violation("sent a masked frame (a server must not mask, RFC 6455 section 5.1)")
	case !w.client && !f.masked:
		w.violation("sent an unmasked frame (a client must mask, RFC 6455 section 5.1)")
	}
	if f.rsv != 0 {
		w.violation("set reserved bits %03b without an extension (RFC 6455 section 5.2)", f.rsv)
	}
	f.length = -1
	return f, nil
}

// event is what a probe observes next on a connection: a message, a Close
// frame, the end of the connection, or nothing within the wait.
type event struct {
	kind    eventKind
	op      byte   // message: opText or opBinary
	data    []byte // message payload
	code    int    // close: the close code, 1005 when the frame had none
	reason  string // close: the reason text (peer input)
	err     error  // eof or error: the read error
	at      time.Time
	partial int // bytes of an unfinished message when the connection ended
}

type eventKind int

const (
	evMessage eventKind = iota
	evClose
	evEOF     // the connection ended without a Close frame
	evTimeout // nothing within the wait
	evError   // the peer broke framing so that the probe cannot read on
	evPing    // a Ping arrived (only with reportPings)
)

// next reads until a complete data message, a Close frame, the end of the
// connection or the deadline. It answers Pings (unless noPong), and reports
// them between messages with reportPings, and ignores Pongs. On a
// Close frame it answers with a Close frame of the same code, as RFC 6455
// section 5.5.1 asks, and closes the connection.
func (w *wire) next(deadline time.Time) event {
	w.conn.SetReadDeadline(deadline)
	var msg []byte
	var op byte
	inMsg := false
	for {
		f, err := w.readFrame()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				return event{kind: evTimeout, at: time.Now(), partial: len(msg)}
			case errors.Is(err, errFrameTooLarge):
				return event{kind: evError, err: err, at: time.Now()}
			}
			return event{kind: evEOF, err: err, at: time.Now(), partial: len(msg)}
		}
		switch f.op {
		case opPing:
			w.wmu.Lock()
			w.pings = append(w.pings, time.Now())
			w.wmu.Unlock()
			if !w.noPong {
				w.write(frame{fin: true, op: opPong, masked: w.client, payload: f.payload, length: -1})
			}
			if w.reportPings && !inMsg {
				return event{kind: evPing, at: time.Now()}
			}
			continue
		case opPong:
			continue
		case opClose:
			ev := event{kind: evClose, code: 1005, at: time.Now()}
			if len(f.payload) >= 2 {
				ev.code = int(binary.BigEndian.Uint16(f.payload))
				ev.reason = string(f.payload[2:])
			} else if len(f.payload) == 1 {
				w.violation("sent a Close frame with a one-byte payload")
			}
			if !utf8.ValidString(ev.reason) {
				w.violation("sent a Close reason that is not UTF-8")
			}
			reply := ev.code
			if reply == 1005 {
				w.write(frame{fin: true, op: opClose, masked: w.client, length: -1})
			} else {
				w.sendClose(reply, "")
			}
			w.conn.Close()
			return ev
		case opText, opBinary:
			if inMsg {
				w.violation("started a new message inside a fragmented one")
			}
			op, msg, inMsg = f.op, append([]byte(nil), f.payload...), true
		case opContinuation:
			if !inMsg {
				w.violation("sent a continuation frame outside a message")
				continue
			}
			msg = append(msg, f.payload...)
		default:
			w.violation("sent reserved opcode %#x", f.op)
			continue
		}
		if len(msg) > maxProbeFrame {
			return event{kind: evError, err: errFrameTooLarge, at: time.Now()}
		}
		if f.fin {
			return event{kind: evMessage, op: op, data: msg, at: time.Now()}
		}
	}
}

// Close closes the connection.
func (w *wire) Close() error { return w.conn.Close() }

// dialOptions shape the upgrade request of a client-role wire.
type dialOptions struct {
	origin     string
	protocols  []string // nil: wsproof.v1; empty: no Sec-WebSocket-Protocol header
	extensions string
	query      string // replaces the URL's query
	header     http.Header
}

// upgradeError is a refused upgrade: the HTTP status and the first bytes of
// the body, for the report.
type upgradeError struct {
	status int
	body   string
}

func (e *upgradeError) Error() string {
	return fmt.Sprintf("upgrade refused with HTTP status %d", e.status)
}

// dialTCP opens the TCP (and TLS) connection to u.
func dialTCP(ctx context.Context, u *url.URL, tlsConf *tls.Config) (net.Conn, error) {
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "wss" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "wss" {
		return conn, nil
	}
	cfg := &tls.Config{}
	if tlsConf != nil {
		cfg = tlsConf.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = u.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// upgradeRequest is the text of a WebSocket upgrade request for u.
func upgradeRequest(u *url.URL, key string, o dialOptions) string {
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	q := u.RawQuery
	if o.query != "" {
		q = o.query
	}
	if q != "" {
		path += "?" + q
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path, u.Host)
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key)
	protos := o.protocols
	if protos == nil {
		protos = []string{protocol.Subprotocol}
	}
	if len(protos) > 0 {
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", strings.Join(protos, ", "))
	}
	if o.extensions != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Extensions: %s\r\n", o.extensions)
	}
	if o.origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", o.origin)
	}
	for k, vs := range o.header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("User-Agent: wsproof-probe\r\n\r\n")
	return b.String()
}

// dialWire opens a WebSocket to u in the client role. A refused upgrade is
// an *upgradeError; the 101 response is returned for its headers.
func dialWire(ctx context.Context, u *url.URL, tlsConf *tls.Config, o dialOptions) (*wire, *http.Response, error) {
	conn, err := dialTCP(ctx, u, tlsConf)
	if err != nil {
		return nil, nil, err
	}
	var kb [16]byte
	rand.Read(kb[:])
	key := base64.StdEncoding.EncodeToString(kb[:])
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	} else {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := io.WriteString(conn, upgradeRequest(u, key, o)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("reading the upgrade response: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		conn.Close()
		return nil, resp, &upgradeError{status: resp.StatusCode, body: string(body)}
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		conn.Close()
		return nil, resp, errors.New("the 101 response has a wrong Sec-WebSocket-Accept")
	}
	conn.SetDeadline(time.Time{})
	w := newWire(conn, br, true)
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		if st.Version == tls.VersionTLS13 {
			w.exporter, _ = st.ExportKeyingMaterial(protocol.ExporterLabel, nil, protocol.ExporterSize)
		}
	}
	return w, resp, nil
}
