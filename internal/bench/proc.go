package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// child is a server process started by the load generator.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready childReady
	ctl   *http.Client
	done  chan struct{}
	// more receives the lines the child prints after its ready line (the
	// attacker's report); it closes when the child's output ends.
	more <-chan string
}

// startChild runs path with args, waits for its ready line and checks that
// every address it reports is on loopback. The child dies with the parent
// (Pdeathsig) and when its stdin closes.
func startChild(name, path string, args []string, env []string, logw io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, stdin: stdin, done: make(chan struct{}),
		ctl: &http.Client{Timeout: 60 * time.Second}}
	lines := make(chan string, 1)
	more := make(chan string, 4)
	c.more = more
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() {
			select {
			case more <- sc.Text():
			default: // nobody is reading: drop it
			}
		}
		close(more)
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(c.done) }()
	select {
	case line, ok := <-lines:
		if !ok {
			c.kill()
			return nil, fmt.Errorf("%s: exited before it was ready", name)
		}
		if err := json.Unmarshal([]byte(line), &c.ready); err != nil {
			c.kill()
			return nil, fmt.Errorf("%s: bad ready line %q", name, line)
		}
	case <-time.After(60 * time.Second):
		c.kill()
		return nil, fmt.Errorf("%s: not ready after 60 s", name)
	}
	for _, a := range []string{c.ready.WS, c.ready.WSS, c.ready.Ctl} {
		if a == "" {
			continue
		}
		if err := checkLoopback(a); err != nil {
			c.kill()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	c.ready.PID = cmd.Process.Pid
	return c, nil
}

// command writes one line to the child's standard input.
func (c *child) command(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

// stop closes the child's stdin, which ends it, and kills it if it has not
// exited within 5 seconds. Only this child's own pid is signalled.
func (c *child) stop() {
	c.stdin.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.kill()
	}
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	<-c.done
}

func (c *child) get(path string, v any) error {
	resp, err := c.ctl.Get("http://" + c.ready.Ctl + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s%s: HTTP %d", c.name, path, resp.StatusCode)
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// cpu is the child's CPU time in microseconds, as the child reads it from
// its own clock_gettime(CLOCK_PROCESS_CPUTIME_ID).
func (c *child) cpu() (float64, error) {
	var ru map[string]int64
	if err := c.get("/rusage", &ru); err != nil {
		return 0, err
	}
	return float64(ru["cpu_ns"]) / 1e3, nil
}

func (c *child) stats() (map[string]float64, error) {
	m := map[string]float64{}
	err := c.get("/stats", &m)
	return m, err
}

func (c *child) gc() error { return c.get("/gc", nil) }

// rss returns VmRSS and VmHWM of the child in KiB, from /proc.
func (c *child) rss() (rss, hwm float64, err error) {
	return procRSS(c.ready.PID)
}

func procRSS(pid int) (rss, hwm float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm, nil
}

// profile saves a pprof profile from the child: kind "profile" (CPU, for
// seconds) or "heap"/"goroutine". It returns the file written.
func (c *child) profile(ctx context.Context, kind string, seconds int, file string) (string, error) {
	u := "http://" + c.ready.Ctl + "/debug/pprof/" + kind
	if kind == "profile" {
		u += "?seconds=" + strconv.Itoa(seconds)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := (&http.Client{Timeout: time.Duration(seconds+30) * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return file, err
}

// CPU clocks of clock_gettime(2). They read the scheduler's exact runtime;
// getrusage's user and system times are tick samples scaled to it, and
// proved too coarse and irregular on this kind of VM for short intervals.
const (
	clockProcessCPU = 2 // CLOCK_PROCESS_CPUTIME_ID
	clockThreadCPU  = 3 // CLOCK_THREAD_CPUTIME_ID
)

func cpuClock(id uintptr) time.Duration {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, id, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}

// selfCPU is this process's CPU time in microseconds.
func selfCPU() float64 { return float64(cpuClock(clockProcessCPU)) / 1e3 }

// threadCPU is the calling OS thread's CPU time; the caller locks itself to
// its thread.
func threadCPU() time.Duration { return cpuClock(clockThreadCPU) }

// raiseNofile lifts the soft limit on open files to the hard limit.
func raiseNofile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, err
		}
	}
	return rl.Cur, nil
}
