// Package report turns the results of papo runs into one self-contained HTML page for people
// who read training dynamics as pictures: the entropy trajectory with its EMA and phase φ, the
// distribution of entropy polarity P by branch and the four quadrants of sign(A) × sign(T),
// the predicted entropy change of each step against the realized change to the next, methods
// side by side, the tokens of largest |P|, and the run's parameters (docs/MATH.md defines every
// symbol).
//
// A Series is a run.Sink: feed it a Pipeline's or a Replay's results, one Series per input.
// It keeps every step's summary row (about a hundred bytes a step) and, per step, logarithmic
// histograms of |P| for each branch, which are merged pairwise once a run has more steps than a
// figure draws bins (MaxBins), so that memory stays bounded whatever the size of the input and
// the number of steps; the tokens of largest |P| are a bounded heap. No token row is kept.
//
// Report.WriteHTML renders the page with html/template (texts from files, such as a
// vocabulary's token texts, are escaped) and inline SVG figures drawn with gonum.org/v1/plot;
// the page loads nothing: a Content-Security-Policy forbids every fetch, and a small inline
// script records any script error or policy violation and measures each figure into data-
// attributes, which is how the browser test reads what the page did. Lines are drawn over at
// most MaxBins points (steps are averaged in equal runs), so a run of 10,000 steps gives the
// same size of page as one of 500, and a run of one step still shows its numbers. A figure
// without data (no advantages, no trained tokens, a single step) is a sentence that says why.
package report
