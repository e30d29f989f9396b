//go:build unix

package wsio

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	a, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-accepted
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// TestTryFlush: what the socket takes at once is written without waiting;
// when it takes only part, the rest stays held, ahead of later writes, and
// Flush writes it; the peer reads every octet in order. Without a socket
// under it, TryFlush writes nothing.
func TestTryFlush(t *testing.T) {
	a, b := tcpPair(t)
	c := NewBatchConn(a)
	c.Hold()
	c.Write([]byte("small"))
	if done, err := c.TryFlush(); !done || err != nil {
		t.Fatalf("TryFlush of 5 octets: %v %v", done, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "small" {
		t.Fatalf("read %q %v", got, err)
	}

	// A peer that does not read and a small send buffer: the socket takes
	// part of 4 batches of 60 KiB.
	a.SetWriteBuffer(4096)
	b.SetReadBuffer(4096)
	var want []byte
	partial := false
	for i := range 4 {
		c.Hold()
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 60<<10)
		want = append(want, chunk...)
		c.Write(chunk)
		done, err := c.TryFlush()
		if err != nil {
			t.Fatal(err)
		}
		if !done {
			partial = true
			break
		}
	}
	if !partial {
		t.Fatal("the socket took 240 KiB at once; the test needs a partial write")
	}
	c.Write([]byte("tail")) // still held: after the rest
	want = append(want, "tail"...)
	read := make(chan []byte)
	b.SetReadDeadline(time.Now().Add(10 * time.Second)) // a lost octet fails, not hangs
	go func() {
		got, _ := io.ReadAll(io.LimitReader(b, int64(len(want))))
		read <- got
	}()
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := <-read; !bytes.Equal(got, want) {
		t.Fatalf("the peer read %d octets, not the %d written in order", len(got), len(want))
	}

	fc := &fakeConn{}
	p := NewBatchConn(fc)
	p.Hold()
	p.Write([]byte("x"))
	if done, err := p.TryFlush(); done || err != nil {
		t.Fatalf("TryFlush without a socket: %v %v", done, err)
	}
	if n, _ := fc.stream(); n != 0 {
		t.Fatal("TryFlush without a socket wrote")
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, s := fc.stream(); string(s) != "x" {
		t.Fatalf("Flush wrote %q", s)
	}
}
