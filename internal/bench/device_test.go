package bench

import (
	"strings"
	"testing"
)

// TestSumGuest: the guest's RSS is that of the mappings in the 4 GiB from
// the guest base, found from the binary's first mapping; the emulator's
// own mappings (its binary, heap, translated code) are left out.
func TestSumGuest(t *testing.T) {
	smaps := `00011000-00475000 r--p 00000000 fe:00 10133698                           /tmp/x/tinyplain-linux-arm64
Size:               4496 kB
Rss:                4240 kB
00481000-004ca000 rw-p 00470000 fe:00 10133698                           /tmp/x/tinyplain-linux-arm64
Rss:                 228 kB
VmFlags: rd wr mr mw me ac
7d0e4c00-7d0e5000 rw-p 00000000 00:00 0
Rss:                 708 kB
100000000-100002000 rw-p 00000000 00:00 0
Rss:                   8 kB
555560f9a000-55556195c000 rw-p 00000000 00:00 0                          [heap]
Rss:                9960 kB
7f5854000000-7f585bfff000 rwxp 00000000 00:00 0
Rss:                4096 kB
7f5863c28000-7f58640a7000 r-xp 00228000 fe:00 10166606                   /usr/bin/qemu-aarch64-static
Rss:                2528 kB
`
	got, err := sumGuest([]byte(smaps), "/tmp/x/tinyplain-linux-arm64", 0x10000)
	if err != nil || got != 4240+228+708 {
		t.Errorf("sumGuest = %v, %v; want %d", got, err, 4240+228+708)
	}
	if _, err := sumGuest([]byte(smaps), "/tmp/x/other", 0x10000); err == nil {
		t.Error("sumGuest found an unmapped binary")
	}
}

// TestDeviceTargets: the footprint targets are judged on the worst target,
// and -merge keeps the device section's sizes and allocations together.
func TestDeviceTargets(t *testing.T) {
	r := &Results{Sections: []string{"device"}, Device: []*DeviceItem{
		{Program: devPlain, Target: "linux/amd64", SizeBytes: 1000, RSSKiB: 100},
		{Program: devClient, Target: "linux/amd64", SizeBytes: 1100, RSSKiB: 110},
		{Program: devPlain, Target: "linux/mips GOMIPS=softfloat", SizeBytes: 1000, RSSKiB: 100, Emulated: true},
		{Program: devClient, Target: "linux/mips GOMIPS=softfloat", SizeBytes: 1160, RSSKiB: 119, Emulated: true},
	}, DeviceAllocs: []*DeviceAllocs{{Program: devPlain, Allocs: 86}, {Program: devClient, Allocs: 320}}}
	got := map[string]Target{}
	for _, x := range evaluate(r) {
		got[x.Name] = x
	}
	if x := got[tDeviceSize]; x.Pass || !strings.Contains(x.Figure, "1.16 x at worst (linux/mips GOMIPS=softfloat: 1160 vs 1000 bytes)") {
		t.Errorf("size target %+v", x)
	}
	if x := got[tDeviceRSS]; !x.Pass || !strings.Contains(x.Figure, "1.19 x at worst (linux/mips GOMIPS=softfloat, under qemu-user emulation") {
		t.Errorf("RSS target %+v", x)
	}
	m := mergeResults(r, &Results{Sections: []string{"memory"}, Memory: []*MemResult{{System: "plain"}}})
	if len(m.Device) != 4 || len(m.DeviceAllocs) != 2 {
		t.Errorf("merge kept %d device items and %d allocation counts", len(m.Device), len(m.DeviceAllocs))
	}
	if md := markdown(r, "BENCHMARKS.md"); !strings.Contains(md, "| wsproof client | 320 | 3.72x |") || !strings.Contains(md, "119 (under qemu-user emulation) | 1.19x") {
		t.Errorf("markdown:\n%s", md)
	}
}
