"""Data: read files (sources), pick and check columns, split, and format prompts."""

from peftlab.data.prepare import Example, PreparedData, prepare_data
from peftlab.data.sources import read_rows

__all__ = ["Example", "PreparedData", "prepare_data", "read_rows"]
