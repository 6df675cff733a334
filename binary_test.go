package main

import (
	"testing"

	"github.com/opmond/opmond/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }
