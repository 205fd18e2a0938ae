"""What a person looks at: result tables (terminal and Markdown) and plots."""
