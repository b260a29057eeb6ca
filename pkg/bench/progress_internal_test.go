package bench

import (
	"os"
	"strings"
	"testing"

	"github.com/schollz/progressbar/v3"
)

// The progress bars get a writer that is not an *os.File (progressbar
// fsyncs those after each render) and still write to the file.
func TestProgressGoesToTheFileWithoutBeingOne(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "progress")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := unsynced(f)
	if _, isFile := w.(*os.File); isFile {
		t.Fatal("unsynced returned the *os.File itself: progressbar would fsync it")
	}
	bar := progressbar.NewOptions(3, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("filing"))
	_ = bar.Add(3)
	_ = bar.Finish()
	b, err := os.ReadFile(f.Name())
	if err != nil || !strings.Contains(string(b), "filing") {
		t.Fatalf("the file holds %q (%v), want the bar", b, err)
	}
}
