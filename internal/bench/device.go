package bench

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wsproof/wsproof/internal/devtarget"
	"github.com/wsproof/wsproof/keys"
)

// goBuild runs go build in dir with extra environment and flags.
func goBuild(dir string, env []string, out, pkg string, flags ...string) error {
	args := append([]string{"build"}, flags...)
	args = append(args, "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// moduleRoot is the folder of the wsproof module's go.mod, from go env.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	data, err := os.ReadFile(gomod)
	if gomod == "" || gomod == os.DevNull || err != nil || !strings.Contains(string(data), "module github.com/wsproof/wsproof\n") {
		return "", fmt.Errorf("run wsproof-bench inside the wsproof repository (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// Names of the two device programs in the results.
const (
	devPlain  = "plain gorilla"
	devClient = "wsproof client"
)

// handshakeOps is how many handshakes each repetition of the allocation
// count averages over.
const handshakeOps = 200

// device builds the minimal client programs (tinyclient: client.Dial;
// tinyplain: the same on plain gorilla) with -trimpath -ldflags='-s -w'
// and CGO_ENABLED=0 for linux/amd64 and, with -cross, every device target
// of internal/devtarget, and reports their sizes. Each build is run
// against the server child until it is connected, to read its RSS: the
// linux/amd64 build here; the others under qemu-user emulation, where the
// figure is the RSS of the guest's own memory (guestRSS), beside that of
// the whole emulator process. Heap allocations per handshake are counted
// here, in this process, for package client and for a gorilla dial, over
// the same operation as the handshake section's.
func (b *bench) device() error {
	o := b.o
	targets := []devtarget.Target{devtarget.Native}
	if o.cross {
		targets = append(targets, devtarget.Devices...)
	}
	programs := []struct{ name, pkg string }{
		{devPlain, "./cmd/wsproof-bench/tinyplain"},
		{devClient, "./cmd/wsproof-bench/tinyclient"},
	}
	keyFile, setFile, err := b.e.writeClientFiles()
	if err != nil {
		return err
	}
	for _, t := range targets {
		_, emuErr := t.Emulator()
		for _, p := range programs {
			bin, err := filepath.Abs(filepath.Join(b.e.dir, filepath.Base(p.pkg)+"-"+t.Slug()))
			if err != nil {
				return err
			}
			if err := goBuild(b.e.root, t.Env(), bin, p.pkg, devtarget.BuildFlags...); err != nil {
				return err
			}
			fi, err := os.Stat(bin)
			if err != nil {
				return err
			}
			item := &DeviceItem{Program: p.name, Target: t.String(), SizeBytes: fi.Size(), Emulated: t.Qemu != ""}
			args := []string{wsURL(b.srv.ready.WS, "/ws", false), keyFile, kidOf(keys.ES256), setFile, identity}
			if p.name == devPlain {
				args = []string{wsURL(b.srv.ready.WS, "/plain", false)}
			}
			if emuErr != nil {
				item.Note = "RSS not measured: " + emuErr.Error()
				b.res.Errors = append(b.res.Errors, fmt.Sprintf("device %s: %v", t, emuErr))
			} else {
				for range o.runs {
					rss, emu, err := connectedRSS(t, bin, args)
					if err != nil {
						return fmt.Errorf("%s %s: %w", p.name, t, err)
					}
					item.Runs = append(item.Runs, rss)
					if item.Emulated {
						item.EmulatorRuns = append(item.EmulatorRuns, emu)
					}
				}
				item.RSSKiB = median(item.Runs)
				if item.Emulated {
					item.EmulatorRSSKiB = median(item.EmulatorRuns)
				}
			}
			b.logf("device %-14s %-28s %8d bytes  RSS %v KiB (emulator %v)", p.name, t, item.SizeBytes, item.Runs, item.EmulatorRuns)
			b.res.Device = append(b.res.Device, item)
		}
	}
	ops := []struct {
		name string
		f    op
	}{
		{devPlain, plainOp(wsURL(b.srv.ready.WS, "/plain", false), gorillaDialer(nil, nil, nil))},
		{devClient, wsproofOp(wsURL(b.srv.ready.WS, "/ws", false), b.e.clientConfig(keys.ES256, false))},
	}
	for _, x := range ops {
		a := &DeviceAllocs{Program: x.name, Ops: handshakeOps}
		for range o.runs {
			allocs, size, err := countAllocs(x.f, handshakeOps)
			if err != nil {
				return fmt.Errorf("%s: %w", x.name, err)
			}
			a.Runs = append(a.Runs, allocs)
			a.BytesRuns = append(a.BytesRuns, size)
		}
		a.Allocs, a.Bytes = median(a.Runs), median(a.BytesRuns)
		b.logf("device %-14s %v allocations, %v bytes per handshake", x.name, a.Runs, a.BytesRuns)
		b.res.DeviceAllocs = append(b.res.DeviceAllocs, a)
	}
	return nil
}

// countAllocs runs f n times, one after the other, after a few to warm
// up, and returns the heap allocations and bytes allocated per run, from
// runtime.MemStats: those of the whole process, which is otherwise idle.
func countAllocs(f op, n int) (allocs, bytes float64, err error) {
	run := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := f(ctx)
		return err
	}
	for range 5 {
		if err := run(); err != nil {
			return 0, 0, err
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		if err := run(); err != nil {
			return 0, 0, err
		}
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(n), float64(after.TotalAlloc-before.TotalAlloc) / float64(n), nil
}

// guestSpace is the size of the address space qemu-user gives a guest
// whose RSS is measured: what it always reserves for a 32-bit guest, and
// what -R reserves for a 64-bit one, so that every mapping of the guest
// lies in one known range of the emulator's address space.
const guestSpace = 1 << 32

// connectedRSS runs bin on target t until it prints "connected", reads its
// RSS in KiB, then closes its standard input so that it closes the socket
// and exits. Natively rss is the process's VmRSS and emu is 0; under
// emulation rss is the guest's (guestRSS) and emu the emulator process's
// VmRSS.
func connectedRSS(t devtarget.Target, bin string, args []string) (rss, emu float64, err error) {
	var qemuArgs []string
	if t.Qemu != "" && t.Bits == 64 {
		qemuArgs = []string{"-R", "0x" + strconv.FormatUint(guestSpace, 16)}
	}
	cmd, err := t.Command(bin, qemuArgs, args...)
	if err != nil {
		return 0, 0, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
	}()
	select {
	case l := <-line:
		if l != "connected" {
			return 0, 0, fmt.Errorf("did not connect: %q %s", l, stderr.String())
		}
	case <-time.After(60 * time.Second):
		return 0, 0, fmt.Errorf("no connection after 60 s")
	}
	time.Sleep(300 * time.Millisecond)
	total, _, err := procRSS(cmd.Process.Pid)
	if err != nil || t.Qemu == "" {
		return total, 0, err
	}
	rss, err = guestRSS(cmd.Process.Pid, bin)
	return rss, total, err
}

// guestRSS is the resident memory, in KiB, of the guest program bin that
// the qemu-user process pid runs: the resident pages of the mappings in
// the guest's address space (its binary, heap, stacks), without the
// emulator's own (its binary, its heap, the translated code). qemu-user
// puts guest address g at host address guestBase+g; guestBase is where the
// binary's first segment is mapped, less that segment's address in the
// ELF file.
func guestRSS(pid int, bin string) (float64, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return 0, err
	}
	var first uint64
	found := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Off == 0 {
			first, found = p.Vaddr&^0xfff, true
			break
		}
	}
	f.Close()
	if !found {
		return 0, fmt.Errorf("%s: no loadable segment at offset 0", bin)
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	return sumGuest(data, bin, first)
}

// sumGuest adds up the Rss of the mappings of smaps that lie in the
// guest's address space: guestSpace bytes from guestBase, which is the
// start of the mapping of bin at file offset 0, less vaddr.
func sumGuest(smaps []byte, bin string, vaddr uint64) (float64, error) {
	type mapping struct {
		start, end uint64
		rssKiB     float64
	}
	var maps []mapping
	base, haveBase := uint64(0), false
	for _, line := range bytes.Split(smaps, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			off, err3 := strconv.ParseUint(f[2], 16, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return 0, fmt.Errorf("smaps: unexpected line %q", line)
			}
			maps = append(maps, mapping{start: start, end: end})
			if !haveBase && off == 0 && len(f) >= 6 && f[5] == bin && start >= vaddr {
				base, haveBase = start-vaddr, true
			}
			continue
		}
		if len(f) == 3 && f[0] == "Rss:" && len(maps) > 0 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, fmt.Errorf("smaps: unexpected line %q", line)
			}
			maps[len(maps)-1].rssKiB = v
		}
	}
	if !haveBase {
		return 0, fmt.Errorf("smaps: %s is not mapped", bin)
	}
	total := 0.0
	for _, m := range maps {
		if m.start >= base && m.end <= base+guestSpace {
			total += m.rssKiB
		}
	}
	return total, nil
}
