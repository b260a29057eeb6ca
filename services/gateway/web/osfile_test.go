package web

import "os"

var osReadFile = os.ReadFile
