"""Export to microcontrollers: self-contained C99 from an int8 QDQ model, verified where it runs."""
