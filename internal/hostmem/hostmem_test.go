package hostmem

import "testing"

func TestParse(t *testing.T) {
	text := "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\nHugePages_Total:       0\n"
	got, err := parse(text, []string{"MemTotal", "MemAvailable", "HugePages_Total"})
	if err != nil {
		t.Fatal(err)
	}
	if got["MemTotal"] != 24576000<<10 || got["MemAvailable"] != 2048<<10 || got["HugePages_Total"] != 0 {
		t.Fatalf("got %v", got)
	}
	if _, err := parse(text, []string{"Nope"}); err == nil {
		t.Fatal("a missing key must be an error")
	}
	if _, err := parse("MemTotal: x kB\n", []string{"MemTotal"}); err == nil {
		t.Fatal("a bad number must be an error")
	}
}

func TestReadHost(t *testing.T) {
	total, err := Total()
	if err != nil {
		t.Skip(err)
	}
	avail, err := Available()
	if err != nil || avail <= 0 || avail > total {
		t.Fatalf("available %d of %d: %v", avail, total, err)
	}
}
