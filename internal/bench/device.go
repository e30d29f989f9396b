package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wsproof/wsproof/keys"
)

// deviceFlags are the build flags of the footprint figures.
var deviceFlags = []string{"-trimpath", "-ldflags=-s -w"}

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

// device builds the minimal client programs (tinyclient: client.Dial;
// tinyplain: the same on plain gorilla) with -trimpath -ldflags='-s -w' and
// CGO_ENABLED=0 for each target, reports their sizes, and runs the
// linux/amd64 builds here against the server child to read their RSS while
// connected (the arm builds cannot run on this machine; their RSS is not
// measured).
func (b *bench) device() error {
	o := b.o
	targets := [][3]string{{"linux", "amd64", ""}}
	if o.cross {
		targets = append(targets, [3]string{"linux", "arm64", ""}, [3]string{"linux", "arm", "7"})
	}
	programs := []struct{ name, pkg string }{
		{"plain gorilla", "./cmd/wsproof-bench/tinyplain"},
		{"wsproof client", "./cmd/wsproof-bench/tinyclient"},
	}
	keyFile, setFile, err := b.e.writeClientFiles()
	if err != nil {
		return err
	}
	for _, p := range programs {
		for _, t := range targets {
			target := t[0] + "/" + t[1]
			if t[2] != "" {
				target += " (GOARM=" + t[2] + ")"
			}
			bin := filepath.Join(b.e.dir, fmt.Sprintf("%s-%s-%s", filepath.Base(p.pkg), t[0], t[1]))
			env := []string{"CGO_ENABLED=0", "GOOS=" + t[0], "GOARCH=" + t[1]}
			if t[2] != "" {
				env = append(env, "GOARM="+t[2])
			}
			if err := goBuild(b.e.root, env, bin, p.pkg, deviceFlags...); err != nil {
				return err
			}
			fi, err := os.Stat(bin)
			if err != nil {
				return err
			}
			item := &DeviceItem{Program: p.name, Target: target, SizeBytes: fi.Size()}
			if t[1] == "amd64" {
				var args []string
				if p.name == "plain gorilla" {
					args = []string{wsURL(b.srv.ready.WS, "/plain", false)}
				} else {
					args = []string{wsURL(b.srv.ready.WS, "/ws", false), keyFile, kidOf(keys.ES256), setFile, identity}
				}
				for range o.runs {
					rss, err := connectedRSS(bin, args)
					if err != nil {
						return fmt.Errorf("%s: %w", p.name, err)
					}
					item.Runs = append(item.Runs, rss)
				}
				item.RSSKiB = median(item.Runs)
			}
			b.logf("device %-14s %-22s %8d bytes  RSS %v KiB", p.name, target, item.SizeBytes, item.Runs)
			b.res.Device = append(b.res.Device, item)
		}
	}
	return nil
}

// connectedRSS runs bin until it prints "connected", reads its VmRSS, then
// closes its stdin so that it closes the socket and exits.
func connectedRSS(bin string, args []string) (float64, error) {
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
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
			return 0, fmt.Errorf("did not connect: %q %s", l, stderr.String())
		}
	case <-time.After(15 * time.Second):
		return 0, fmt.Errorf("no connection after 15 s")
	}
	time.Sleep(200 * time.Millisecond)
	rss, _, err := procRSS(cmd.Process.Pid)
	return rss, err
}
