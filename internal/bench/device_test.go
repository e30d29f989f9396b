package bench

import "testing"

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
