package wsio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

// readAll is what ReadMessage replaces, the reference it must agree with.
func readAll(r io.Reader, limit int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, limit))
}

func TestReadMessage(t *testing.T) {
	for _, size := range []int{0, 1, 64, 511, 4096, scratchSize - 1, scratchSize, scratchSize + 1, 3*scratchSize + 7} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		for _, limit := range []int64{int64(size) + 1, int64(size), int64(size) / 2, 1 << 20} {
			for name, wrap := range map[string]func(io.Reader) io.Reader{
				"whole": func(r io.Reader) io.Reader { return r },
				"bytes": iotest.OneByteReader,
				"half":  iotest.HalfReader,
				"eof":   iotest.DataErrReader, // io.EOF with the last octets
			} {
				got, err := ReadMessage(wrap(bytes.NewReader(msg)), limit)
				want, _ := readAll(bytes.NewReader(msg), limit)
				if err != nil || !bytes.Equal(got, want) || got == nil {
					t.Fatalf("size %d limit %d %s: %d octets, %v; want %d", size, limit, name, len(got), err, len(want))
				}
			}
		}
	}
}

func TestReadMessageError(t *testing.T) {
	boom := errors.New("boom")
	for _, size := range []int{0, 100, 2 * scratchSize} {
		r := io.MultiReader(bytes.NewReader(make([]byte, size)), iotest.ErrReader(boom))
		if got, err := ReadMessage(r, 1<<20); !errors.Is(err, boom) || got != nil {
			t.Errorf("size %d: %d octets, %v; want boom", size, len(got), err)
		}
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{}, int64(1), uint8(0))
	f.Add(bytes.Repeat([]byte{1}, 100), int64(50), uint8(3))
	f.Add(bytes.Repeat([]byte{2}, scratchSize+10), int64(scratchSize+5), uint8(200))
	f.Fuzz(func(t *testing.T, msg []byte, limit int64, chunk uint8) {
		if limit < 1 {
			limit = 1
		}
		r := io.Reader(bytes.NewReader(msg))
		if chunk > 0 {
			r = &chunked{r: r, n: int(chunk)}
		}
		got, err := ReadMessage(r, limit)
		want, _ := readAll(bytes.NewReader(msg), limit)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d octets, %v; want %d", len(got), err, len(want))
		}
	})
}

// chunked returns at most n octets per Read.
type chunked struct {
	r io.Reader
	n int
}

func (c *chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// fakeConn records each Write and SetWriteDeadline call; a Write waits for
// gate when it is set, and fails with err when it is set.
type fakeConn struct {
	net.Conn
	mu        sync.Mutex
	writes    [][]byte
	deadlines int
	gate      chan struct{}
	entered   chan struct{}
	err       error
}

func (c *fakeConn) Write(p []byte) (int, error) {
	if c.gate != nil {
		c.entered <- struct{}{}
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *fakeConn) SetWriteDeadline(time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadlines++
	return nil
}

func (c *fakeConn) stream() (int, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes), bytes.Join(c.writes, nil)
}

// TestBatchConnOrder: outside a hold each write goes out alone; during one,
// the writer's writes and another goroutine's join one write, in the order
// of the calls, and one that would pass the bound flushes what is held
// first.
func TestBatchConnOrder(t *testing.T) {
	fc := &fakeConn{}
	c := NewBatchConn(fc)
	c.Write([]byte("a"))
	c.Write([]byte("b"))
	if n, s := fc.stream(); n != 2 || string(s) != "ab" {
		t.Fatalf("without a hold: %d writes %q", n, s)
	}
	c.Hold()
	c.Write([]byte("c"))
	done := make(chan struct{})
	go func() { c.Write([]byte("d")); close(done) }() // a Pong, say
	<-done
	c.Write([]byte("e"))
	if n, _ := fc.stream(); n != 2 {
		t.Fatalf("a held write went out: %d writes", n)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, s := fc.stream(); n != 3 || string(s) != "abcde" {
		t.Fatalf("after Flush: %d writes %q", n, s)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, _ := fc.stream(); n != 3 {
		t.Fatalf("an empty Flush wrote: %d writes", n)
	}

	big := bytes.Repeat([]byte("x"), batchMax-10)
	c.Hold()
	c.Write([]byte("f"))
	c.Write(big)
	c.Write([]byte("0123456789")) // passes the bound: f and big go first
	c.Write(bytes.Repeat([]byte("y"), batchMax+1))
	c.Write([]byte("g"))
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "abcdef" + string(big) + "0123456789" + string(bytes.Repeat([]byte("y"), batchMax+1)) + "g"
	if _, s := fc.stream(); string(s) != want {
		t.Fatalf("stream of %d octets differs from the %d written", len(s), len(want))
	}
}

// TestBatchConnError: a failed write is returned by Flush and by every later
// write, held or not.
func TestBatchConnError(t *testing.T) {
	boom := errors.New("boom")
	fc := &fakeConn{}
	c := NewBatchConn(fc)
	c.Hold()
	if _, err := c.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	fc.err = boom
	if err := c.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush: %v, want boom", err)
	}
	fc.err = nil
	if _, err := c.Write([]byte("b")); !errors.Is(err, boom) {
		t.Fatalf("Write after the failure: %v, want boom", err)
	}
	c.Hold()
	if _, err := c.Write([]byte("c")); !errors.Is(err, boom) {
		t.Fatalf("held Write after the failure: %v, want boom", err)
	}
	if err := c.Flush(); !errors.Is(err, boom) {
		t.Fatalf("second Flush: %v, want boom", err)
	}
	if n, _ := fc.stream(); n != 0 {
		t.Fatalf("%d writes after the failure", n)
	}
}

// TestBatchConnDeadline: a deadline already in force is not set again, and
// a write blocked on the network does not hold up SetWriteDeadline, which
// is how a closer cuts it short.
func TestBatchConnDeadline(t *testing.T) {
	fc := &fakeConn{gate: make(chan struct{}), entered: make(chan struct{})}
	c := NewBatchConn(fc)
	d := time.Now().Add(time.Hour)
	c.SetWriteDeadline(d)
	c.SetWriteDeadline(d)
	if fc.deadlines != 1 {
		t.Fatalf("%d deadlines set, want 1", fc.deadlines)
	}
	c.Hold()
	c.Write([]byte("a"))
	flushed := make(chan error)
	go func() { flushed <- c.Flush() }()
	<-fc.entered
	set := make(chan struct{})
	go func() { c.SetWriteDeadline(time.Unix(1, 0)); close(set) }()
	select {
	case <-set:
	case <-time.After(5 * time.Second):
		t.Fatal("SetWriteDeadline waited for the blocked write")
	}
	close(fc.gate)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if fc.deadlines != 2 {
		t.Fatalf("%d deadlines set, want 2", fc.deadlines)
	}
}

func TestDeadline(t *testing.T) {
	var d Deadline
	t0 := time.Now()
	const timeout = 64 * time.Second
	first := d.Next(t0, timeout)
	if first.Sub(t0) != timeout+time.Second {
		t.Fatalf("first deadline %v after now", first.Sub(t0))
	}
	for _, at := range []time.Duration{0, time.Millisecond, time.Second} {
		now := t0.Add(at)
		got := d.Next(now, timeout)
		if got != first {
			t.Fatalf("at +%v: a new deadline", at)
		}
		if got.Sub(now) < timeout {
			t.Fatalf("at +%v: %v left, want at least %v", at, got.Sub(now), timeout)
		}
	}
	now := t0.Add(time.Second + 1)
	if got := d.Next(now, timeout); got.Sub(now) != timeout+time.Second {
		t.Fatalf("past the slack: %v left", got.Sub(now))
	}
}
