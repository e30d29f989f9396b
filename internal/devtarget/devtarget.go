// Package devtarget is the one list of the device architectures the Go
// client is built for and run on (issue 15), and how to build and run a
// program for each on a linux/amd64 machine: cross-compiled with
// CGO_ENABLED=0, run under qemu-user emulation (Debian's qemu-user-static
// or qemu-user). The device test (cmd/wsproof-device), the benchmark's
// device section (internal/bench) and the build lines of docs/devices.md
// (checked by the device test) all use this list.
package devtarget

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Target is one device architecture.
type Target struct {
	GOOS, GOARCH string
	GOARM        string // linux/arm: the ARM version, "6" or "7"
	GOMIPS       string // linux/mips and linux/mipsle: "softfloat", as routers without an FPU need

	// Qemu is the qemu-user emulator that runs the target's programs
	// ("qemu-arm"); empty for a target that runs natively (linux/amd64).
	Qemu string

	// Bits is the width of a pointer: 32 or 64.
	Bits int
}

// Devices are the device targets, in the order reports list them: the
// 32-bit and 64-bit ARMs, little- and big-endian MIPS without an FPU, and
// RISC-V.
var Devices = []Target{
	{GOOS: "linux", GOARCH: "arm", GOARM: "6", Qemu: "qemu-arm", Bits: 32},
	{GOOS: "linux", GOARCH: "arm", GOARM: "7", Qemu: "qemu-arm", Bits: 32},
	{GOOS: "linux", GOARCH: "arm64", Qemu: "qemu-aarch64", Bits: 64},
	{GOOS: "linux", GOARCH: "mipsle", GOMIPS: "softfloat", Qemu: "qemu-mipsel", Bits: 32},
	{GOOS: "linux", GOARCH: "mips", GOMIPS: "softfloat", Qemu: "qemu-mips", Bits: 32},
	{GOOS: "linux", GOARCH: "riscv64", Qemu: "qemu-riscv64", Bits: 64},
}

// Native is the machine the benchmark and the tests run on.
var Native = Target{GOOS: "linux", GOARCH: "amd64", Bits: 64}

// BuildFlags are the go build flags of a device binary: no file system
// paths in it, no symbol table or DWARF (stripped).
var BuildFlags = []string{"-trimpath", "-ldflags=-s -w"}

// String names the target as reports show it: "linux/arm GOARM=6".
func (t Target) String() string {
	s := t.GOOS + "/" + t.GOARCH
	if t.GOARM != "" {
		s += " GOARM=" + t.GOARM
	}
	if t.GOMIPS != "" {
		s += " GOMIPS=" + t.GOMIPS
	}
	return s
}

// Slug is a name for the target's files: "linux-arm-6".
func (t Target) Slug() string {
	s := t.GOOS + "-" + t.GOARCH
	if t.GOARM != "" {
		s += "-" + t.GOARM
	}
	if t.GOMIPS != "" {
		s += "-" + t.GOMIPS
	}
	return s
}

// Env is the environment of go build for the target.
func (t Target) Env() []string {
	env := []string{"CGO_ENABLED=0", "GOOS=" + t.GOOS, "GOARCH=" + t.GOARCH}
	if t.GOARM != "" {
		env = append(env, "GOARM="+t.GOARM)
	}
	if t.GOMIPS != "" {
		env = append(env, "GOMIPS="+t.GOMIPS)
	}
	return env
}

// BuildLine is the shell command that builds pkg for the target into out,
// as docs/devices.md shows it.
func (t Target) BuildLine(out, pkg string) string {
	return strings.Join(t.Env(), " ") + " go build -trimpath -ldflags='-s -w' -o " + out + " " + pkg
}

// ErrNoEmulator is wrapped by Emulator's error when qemu-user is not
// installed.
var ErrNoEmulator = errors.New("qemu-user emulation is not installed: apt-get install qemu-user-static (bash .ci/run does)")

// Emulator returns the path of the target's qemu-user emulator: the static
// build (qemu-arm-static, from Debian's qemu-user-static) or else the
// dynamic one (qemu-arm, from qemu-user). It is called explicitly rather
// than through binfmt_misc, which containers often lack. For a native
// target it returns "".
func (t Target) Emulator() (string, error) {
	if t.Qemu == "" {
		return "", nil
	}
	for _, name := range []string{t.Qemu + "-static", t.Qemu} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", t, ErrNoEmulator)
}

// Command returns the command that runs bin with args on the target: bin
// itself for a native target, else bin under the target's emulator, with
// the emulator's options qemuArgs before it.
func (t Target) Command(bin string, qemuArgs []string, args ...string) (*exec.Cmd, error) {
	emu, err := t.Emulator()
	if err != nil {
		return nil, err
	}
	if emu == "" {
		return exec.Command(bin, args...), nil
	}
	all := append(append(append([]string{}, qemuArgs...), bin), args...)
	return exec.Command(emu, all...), nil
}
