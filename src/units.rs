//! Human sizes: parsing `4M`-style arguments and page rounding.
