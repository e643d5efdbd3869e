"""directory/legacy"""
