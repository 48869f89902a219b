package agent

import (
	"reflect"
	"testing"
)

func TestPlainCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"true", []string{"true"}},
		{"  ls -l /tmp  ", []string{"ls", "-l", "/tmp"}},
		{"sqlite3 /app/db/x.db .tables", []string{"sqlite3", "/app/db/x.db", ".tables"}},
		{"sqlite3 /app/db/x.db '.tables'", nil},
		{"echo $HOME", nil},
		{"ls *", nil},
		{"a=b env", nil},
		{"cd /tmp", nil},
		{"exit 3", nil},
		{"true; false", nil},
		{"sleep 1 &", nil},
		{"cat < f", nil},
		{"echo ~", nil},
		{"# comment", nil},
		{"", nil},
	}
	for _, tt := range tests {
		got, ok := plainCommand(tt.in)
		if ok != (tt.want != nil) || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("plainCommand(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}
