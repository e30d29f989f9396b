package devtarget

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestCIBuildsEveryTarget: bash .ci/run cross-builds the client for every
// device target, with the same GOARM and GOMIPS, before the tests run.
func TestCIBuildsEveryTarget(t *testing.T) {
	data, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*for target in (.*); do$`).FindSubmatch(data)
	if m == nil {
		t.Fatal(".ci/run has no cross-build loop")
	}
	ci := strings.Fields(string(m[1]))
	for _, tg := range Devices {
		want := tg.GOOS + "/" + tg.GOARCH
		switch {
		case tg.GOMIPS != "":
			want += "//" + tg.GOMIPS
		case tg.GOARM != "":
			want += "/" + tg.GOARM
		}
		found := false
		for _, c := range ci {
			found = found || c == want
		}
		if !found {
			t.Errorf(".ci/run does not cross-build %s (%s); its targets: %s", tg, want, ci)
		}
	}
}

func TestTarget(t *testing.T) {
	tg := Devices[4]
	if got, want := tg.String(), "linux/mips GOMIPS=softfloat"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := tg.BuildLine("out", "./cmd/x"), "CGO_ENABLED=0 GOOS=linux GOARCH=mips GOMIPS=softfloat go build -trimpath -ldflags='-s -w' -o out ./cmd/x"; got != want {
		t.Errorf("BuildLine = %q, want %q", got, want)
	}
	if cmd, err := Native.Command("/bin/true", []string{"-R", "1"}, "a"); err != nil || strings.Join(cmd.Args, " ") != "/bin/true a" {
		t.Errorf("Native.Command = %v, %v", cmd, err)
	}
}
