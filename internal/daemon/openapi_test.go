package daemon

import (
	"bufio"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPICoversRoutes keeps api/openapi.yaml and the daemon's routes in
// step: every route is described and every described operation is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	f, err := os.Open("../../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pathRE := regexp.MustCompile(`^  (/v1/\S+):\s*$`)
	opRE := regexp.MustCompile(`^    (get|post|put|delete|patch):`)
	var described []string
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := pathRE.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		if !strings.HasPrefix(line, "  ") {
			cur = ""
		}
		if m := opRE.FindStringSubmatch(line); m != nil && cur != "" {
			described = append(described, strings.ToUpper(m[1])+" "+cur)
		}
	}
	var served []string
	for r := range (&Server{}).routes() {
		served = append(served, r)
	}
	sort.Strings(described)
	sort.Strings(served)
	if strings.Join(described, "\n") != strings.Join(served, "\n") {
		t.Fatalf("openapi.yaml describes:\n%s\n\nthe daemon serves:\n%s", strings.Join(described, "\n"), strings.Join(served, "\n"))
	}
}
