module github.com/entropy-polarity/papo

go 1.26

require (
	github.com/apache/arrow/go/v17 v17.0.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	gonum.org/v1/gonum v0.17.0 // indirect
	gorgonia.org/cu v0.9.6 // indirect
)
