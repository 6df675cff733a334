// Package ui holds the dashboard's page and assets, embedded in the binary so
// the dashboard works on a host with no internet access. uPlot (vendor/) is a
// copy of the npm package's dist files; `make ui-vendor` refreshes it.
package ui

import (
	"embed"
	"io/fs"
)

//go:embed index.html app.js style.css favicon.svg vendor/uPlot.iife.min.js vendor/uPlot.min.css vendor/uPlot.LICENSE
var files embed.FS

// Page is the dashboard's HTML page.
var Page = mustRead("index.html")

// Assets are the files served under /ui/.
var Assets fs.FS = files

// mustRead reads an embedded file; it can fail only if the embed list above
// and the files disagree, which the build already rules out.
func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}
