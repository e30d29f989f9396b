package keys

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/configmap"
)

// testWatchInterval is short so that the tests wait little; watchDeadline is
// long so that a slow (race-enabled, loaded) machine does not fail them.
const (
	testWatchInterval = 10 * time.Millisecond
	watchDeadline     = 2 * time.Second
)

// watchEvent is one call of a Watch callback: a change (old, new) or an error.
type watchEvent struct {
	old, new *Set
	err      error
}

// stepWatch runs Watch and hands each of its callbacks to the test in turn.
// Watch stays inside the callback until the test calls proceed, so the test
// can change the file or call Reload at a moment Watch cannot observe: the
// tests are deterministic, with no race between the test's writes and
// Watch's ticks.
type stepWatch struct {
	events   chan watchEvent
	resume   chan struct{}
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

func startWatch(t *testing.T, r *FileRegistry) *stepWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &stepWatch{events: make(chan watchEvent), resume: make(chan struct{}), cancel: cancel, done: make(chan error, 1)}
	hand := func(ev watchEvent) {
		select {
		case w.events <- ev:
		case <-ctx.Done():
			return
		}
		select {
		case <-w.resume:
		case <-ctx.Done():
		}
	}
	go func() {
		w.done <- r.Watch(ctx, testWatchInterval,
			func(old, new *Set) { hand(watchEvent{old: old, new: new}) },
			func(err error) { hand(watchEvent{err: err}) })
	}()
	t.Cleanup(w.stop)
	return w
}

// next waits for Watch's next callback; Watch is held in it until proceed.
func (w *stepWatch) next(t *testing.T, what string) watchEvent {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case <-time.After(watchDeadline):
		t.Fatalf("Watch did not report %s within %v", what, watchDeadline)
		return watchEvent{}
	}
}

// nextChange is next for an event that must be a change.
func (w *stepWatch) nextChange(t *testing.T, what string) watchEvent {
	t.Helper()
	ev := w.next(t, what)
	if ev.err != nil {
		t.Fatalf("waiting for %s, Watch reported an error: %v", what, ev.err)
	}
	return ev
}

// none asserts that Watch calls no callback for d.
func (w *stepWatch) none(t *testing.T, d time.Duration, why string) {
	t.Helper()
	select {
	case ev := <-w.events:
		t.Fatalf("%s; Watch reported old=%p new=%p err=%v", why, ev.old, ev.new, ev.err)
	case <-time.After(d):
	}
}

func (w *stepWatch) proceed() { w.resume <- struct{}{} }

func (w *stepWatch) stop() {
	w.stopOnce.Do(func() {
		w.cancel()
		<-w.done
	})
}

// writeInPlace rewrites the file without replacing it and sets its
// modification time to mtime: what a writer that does not rename, on a file
// system with coarse timestamps, leaves for a poller to compare.
func writeInPlace(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func marshalEntries(t *testing.T, entries []*Entry) []byte {
	t.Helper()
	data, err := MarshalRegistry(entries)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sameSizePair returns two registries of the same size that differ only in
// the first entry's subject, so that an in-place rewrite from one to the
// other changes neither the file's size nor (with writeInPlace) its mtime.
func sameSizePair(t *testing.T) (a, b []byte) {
	entries := testEntries(t)[:2]
	a = marshalEntries(t, entries)
	other := *entries[0]
	other.Subject = strings.Repeat("x", len(other.Subject))
	b = marshalEntries(t, []*Entry{&other, entries[1]})
	if len(a) != len(b) || string(a) == string(b) {
		t.Fatalf("registries of %d and %d bytes, want equal sizes and different contents", len(a), len(b))
	}
	return a, b
}

var coarseMtime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// TestWatchReportsOtherReloads: a change swapped in by someone else's Reload
// is reported by Watch exactly once, as (last reported, current); several such
// changes between two ticks are reported as one.
func TestWatchReportsOtherReloads(t *testing.T) {
	entries := testEntries(t)
	path := filepath.Join(t.TempDir(), "registry.jwks")
	writeAtomic(t, path, marshalEntries(t, entries[:1]))
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	w := startWatch(t, r)

	writeAtomic(t, path, marshalEntries(t, entries[:2]))
	ev := w.nextChange(t, "a change written to the file")
	if ev.old != first || ev.new != r.Current() || ev.new.Len() != 2 {
		t.Fatalf("change (%p, %p with %d keys), want (%p, current with 2 keys)", ev.old, ev.new, ev.new.Len(), first)
	}
	reported := ev.new

	// Watch is held inside onChange: someone else reloads twice meanwhile.
	for n := 3; n <= 4; n++ {
		writeAtomic(t, path, marshalEntries(t, entries[:n]))
		if changed, err := r.Reload(); !changed || err != nil {
			t.Fatalf("Reload of %d keys: changed=%v err=%v", n, changed, err)
		}
	}
	current := r.Current()
	w.proceed()
	ev = w.nextChange(t, "the change made by another caller's Reload")
	if ev.old != reported || ev.new != current {
		t.Fatalf("change (%p, %p), want (last reported %p, current %p)", ev.old, ev.new, reported, current)
	}
	w.proceed()

	// Reported once: the next report is the next change, not a repeat.
	writeAtomic(t, path, marshalEntries(t, entries[:5]))
	ev = w.nextChange(t, "a later change")
	if ev.old != current || ev.new.Len() != 5 {
		t.Fatalf("change (%p, %d keys), want (%p, 5 keys): a change was reported twice", ev.old, ev.new.Len(), current)
	}
	w.proceed()
}

// TestWatchRereadsAfterFailedRead: a half-written file was read (and
// refused), then the writer finished it without changing its identity, size
// or modification time. Watch must read it again and report the change.
func TestWatchRereadsAfterFailedRead(t *testing.T) {
	entries := testEntries(t)
	path := filepath.Join(t.TempDir(), "registry.jwks")
	writeAtomic(t, path, marshalEntries(t, entries[:1]))
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()

	// A preallocated file: final size, only the first half written yet.
	full := marshalEntries(t, entries[:3])
	partial := make([]byte, len(full))
	copy(partial, full[:len(full)/2])
	writeInPlace(t, path, partial, coarseMtime)

	w := startWatch(t, r)
	ev := w.next(t, "the half-written file")
	if ev.err == nil || !strings.HasPrefix(ev.err.Error(), "keys: ") {
		t.Fatalf("half-written file: event %+v, want a keys: error", ev)
	}
	if r.Current() != first {
		t.Fatal("a half-written file replaced the last good snapshot")
	}
	// Watch is held inside onError: the writer finishes, and the file's
	// identity, size and modification time stay what Watch last saw.
	writeInPlace(t, path, full, coarseMtime)
	w.proceed()

	ev = w.nextChange(t, "the finished file")
	if ev.old != first || ev.new != r.Current() || ev.new.Len() != 3 {
		t.Fatalf("change (%p, %d keys), want (%p, 3 keys)", ev.old, ev.new.Len(), first)
	}
	if r.Err() != nil {
		t.Fatalf("Err after the file parsed: %v", r.Err())
	}
	w.proceed()
}

// TestWatchSeesSameStatRewrite: a small file rewritten in place with the same
// size within one modification-time tick, after a good read, is still seen.
func TestWatchSeesSameStatRewrite(t *testing.T) {
	a, b := sameSizePair(t)
	path := filepath.Join(t.TempDir(), "registry.jwks")
	writeInPlace(t, path, a, coarseMtime)
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	writeInPlace(t, path, b, coarseMtime)

	w := startWatch(t, r)
	ev := w.nextChange(t, "a same-size in-place rewrite")
	kid := first.Entries()[0].KeyID
	e, ok := ev.new.Lookup(kid)
	if ev.old != first || ev.new != r.Current() || !ok || strings.Trim(e.Subject, "x") != "" {
		t.Fatalf("change (%p, %p), want (%p, the rewritten registry)", ev.old, ev.new, first)
	}
	w.proceed()
}

// TestWatchLargeFileRereadBound: a large file is trusted by its stat data
// between polls, which is what bounds Watch's cost, but only for rereadEvery:
// after that a same-size in-place rewrite is seen too.
func TestWatchLargeFileRereadBound(t *testing.T) {
	a, b := sameSizePair(t)
	path := filepath.Join(t.TempDir(), "registry.jwks")
	writeInPlace(t, path, a, coarseMtime)
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	r.hashEveryTickBelow = 0 // every file counts as large
	r.rereadEvery = time.Hour
	writeInPlace(t, path, b, coarseMtime)

	w := startWatch(t, r)
	w.none(t, 10*testWatchInterval, "a large file that its stat data says is unchanged was read before rereadEvery")
	if r.Current() != first {
		t.Fatal("the snapshot changed without a report")
	}
	w.stop()

	r.rereadEvery = 3 * testWatchInterval
	w = startWatch(t, r)
	ev := w.nextChange(t, "a same-size in-place rewrite of a large file after rereadEvery")
	if ev.old != first || ev.new != r.Current() {
		t.Fatalf("change (%p, %p), want (%p, current %p)", ev.old, ev.new, first, r.Current())
	}
	w.proceed()
}

// TestWatchReportsEachFailureOnce: Watch reads a refused file on every poll,
// but reports it once and does not parse the same bytes again; different bad
// contents, or the same ones after a good file, are a new failure.
func TestWatchReportsEachFailureOnce(t *testing.T) {
	entries := testEntries(t)
	path := filepath.Join(t.TempDir(), "registry.jwks")
	writeAtomic(t, path, marshalEntries(t, entries[:1]))
	r, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current()
	w := startWatch(t, r)

	bad := []byte(`{"keys":[{"kty":"oct"}]}`)
	writeAtomic(t, path, bad)
	ev := w.next(t, "a refused file")
	if ev.err == nil {
		t.Fatalf("refused file reported as a change (%p, %p)", ev.old, ev.new)
	}
	refused := ev.err
	w.proceed()
	w.none(t, 10*testWatchInterval, "the same refused file was reported twice")
	// The error value is kept, not rebuilt: the bytes were not parsed again.
	if err := r.Err(); err != refused {
		t.Fatalf("Err = %v (%p), want the first refusal %p: identical bytes were parsed again", err, err, refused)
	}

	writeAtomic(t, path, append(bytes.Clone(bad), ' '))
	if ev = w.next(t, "other refused contents"); ev.err == nil || ev.err == refused {
		t.Fatalf("other refused contents: event %+v, want a new error", ev)
	}
	w.proceed()

	writeAtomic(t, path, marshalEntries(t, entries[:2]))
	if ev = w.nextChange(t, "a good file after refused ones"); ev.old != first || ev.new.Len() != 2 {
		t.Fatalf("change (%p, %d keys), want (%p, 2 keys)", ev.old, ev.new.Len(), first)
	}
	w.proceed()

	writeAtomic(t, path, bad)
	if ev = w.next(t, "the first refused contents again, after a good file"); ev.err == nil {
		t.Fatalf("refused file reported as a change (%p, %p)", ev.old, ev.new)
	}
	w.proceed()
}

// TestWatchConfigMapSwap: a registry mounted as Kubernetes mounts a
// ConfigMap or Secret (registry.jwks -> ..data/registry.jwks, ..data -> a
// timestamped folder, the link ..data swapped atomically to a new folder on
// each update) is reloaded within 1 s of each swap at the default polling
// interval (issue 17, spec section "Reload"). Each new version has the old
// one's size and modification time, so only its contents and identity tell
// it apart; the large-file case, which trusts stat data between polls, must
// follow the links to the new file to see it.
func TestWatchConfigMapSwap(t *testing.T) {
	for _, large := range []bool{false, true} {
		t.Run(map[bool]string{false: "small", true: "large"}[large], func(t *testing.T) {
			dir := t.TempDir()
			versions := make([][]byte, 2)
			versions[0], versions[1] = sameSizePair(t)
			update := func(i int) {
				t.Helper()
				if err := configmap.Update(dir, map[string][]byte{"registry.jwks": versions[i%2]}, coarseMtime); err != nil {
					t.Fatal(err)
				}
			}
			update(0)
			r, err := OpenFile(filepath.Join(dir, "registry.jwks"))
			if err != nil {
				t.Fatal(err)
			}
			if large {
				r.hashEveryTickBelow = 0 // every file counts as large
				r.rereadEvery = time.Hour
			}
			changes := make(chan *Set, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Watch(ctx, 0, func(_, new *Set) { changes <- new }, nil) }()
			defer func() { cancel(); <-done }()
			const swaps = 6
			var worst time.Duration
			for i := 1; i <= swaps; i++ {
				t0 := time.Now()
				update(i)
				select {
				case s := <-changes:
					worst = max(worst, time.Since(t0))
					if got := marshalEntries(t, s.Entries()); !bytes.Equal(got, versions[i%2]) {
						t.Fatalf("swap %d: Watch reported a registry other than the one swapped in", i)
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("swap %d: no change reported within 2 s", i)
				}
			}
			t.Logf("ConfigMap-style swap seen within %v (the slowest of %d swaps, polling every %v)", worst.Round(time.Millisecond), swaps, DefaultWatchInterval)
			if worst >= time.Second {
				t.Errorf("a swap took %v to be seen, limit 1 s", worst)
			}
		})
	}
}
