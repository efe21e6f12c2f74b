// Placeholder until the training program lands (issue 6).
int main() { return 0; }
